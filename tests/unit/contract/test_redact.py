"""Credentials never reach status, Events or logs: the pure redaction both sides use."""

from __future__ import annotations

from modeldeploy.contract.redact import REDACTED, redact, redact_userinfo, secret_values


def test_user_info_is_removed_from_every_url() -> None:
    text = 'Could not connect to "http://admin:p@ss@minio.svc:9000/bucket" or s3://key:sec@b/k; see https://host/x'
    out = redact_userinfo(text)
    assert "admin" not in out and "p@ss" not in out and "sec@" not in out
    assert "http://***@minio.svc:9000/bucket" in out and "s3://***@b/k" in out and "https://host/x" in out


def test_values_from_the_secret_are_hidden_wherever_they_appear() -> None:
    environ = {
        "MODELDEPLOY_SECRET_AWS_ENDPOINT_URL": "http://user:pa%40ss-word@10.0.0.5:9000",
        "MODELDEPLOY_SECRET_CUSTOM_THING": "opaque-value-42",
        "MODELDEPLOY_SECRET_FLAG": "1",  # too short to be a credential: never blanks every "1"
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",  # a well-known credential variable, set by hand
        "AWS_EC2_METADATA_DISABLED": "true",  # a flag, not a credential
        "HOME": "/tmp",
    }
    hidden = secret_values(environ)
    message = (
        "unreachable http://user:pa%40ss-word@10.0.0.5:9000/b (pa@ss-word, opaque-value-42, wJalrXUtnFEMI) "
        "version 1 true /tmp"
    )
    out = redact(message, hidden)
    for secret in ("pa%40ss-word", "pa@ss-word", "opaque-value-42", "wJalrXUtnFEMI", "user:"):
        assert secret not in out, out
    assert "http://***@10.0.0.5:9000/b" in out, "the host stays: the admin must know where it failed"
    assert out.endswith("version 1 true /tmp") and REDACTED in out
