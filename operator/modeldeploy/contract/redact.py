"""Keeping credentials out of what people and log collectors read: status, Events, logs,
termination messages.

Both sides use it. The optimizer and `modeldeploy fetch` redact every value that came from the
credentials Secret (they know which: see `SECRET_ENV_PREFIX`) and every URL's user info; the
operator redacts URL user info again from every message it copies into status and Events (defence
in depth: an older optimizer image, or a library that quotes its endpoint, must not leak one).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping

REDACTED = "***"

SECRET_ENV_PREFIX = "MODELDEPLOY_SECRET_"
"""The credentials Secret reaches the pods that fetch the model twice through envFrom: as it is
(boto3 and the GCS client read AWS_*, GOOGLE_*), and again with this prefix, so the program knows
exactly which values came from the Secret without reading the Secret itself."""

MIN_SECRET_LENGTH = 4
"""Values shorter than this are not redacted: a Secret holding `1` or `eu` (a flag, a region code)
would otherwise blank every such character in a message, and such a value is no credential."""

# Well-known credential variables, redacted even without the prefixed copy (a person running
# `modeldeploy optimize` by hand with credentials in the environment).
# Names only, so flags such as AWS_EC2_METADATA_DISABLED=true do not blank every "true".
CREDENTIAL_ENV = re.compile(
    r"^(AWS_ENDPOINT_URL|STORAGE_EMULATOR_HOST)|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY"
)

# scheme://USERINFO@ : user info runs to the last '@' before the path (passwords hold '@' too).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s?#'\"<>]+)@")


def redact_userinfo(text: str) -> str:
    """Every URL's `user:password@` becomes `***@`."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def _parts(value: str) -> set[str]:
    """What to hide of one value: the value itself; for a URL (an endpoint), only its user info (user
    and password, raw and percent-decoded) and query, so that a failure still says which host it
    could not reach (`http://***@minio:9000`) while the URL as the Secret holds it never appears."""
    parts = urllib.parse.urlsplit(value) if "://" in value else None
    if parts is None or not parts.scheme or not parts.netloc:
        return {value} if len(value) >= MIN_SECRET_LENGTH else set()
    found = {parts.query}
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        user, _, password = userinfo.partition(":")
        found |= {userinfo, user, password, urllib.parse.unquote(user), urllib.parse.unquote(password)}
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


def secret_values(environ: Mapping[str, str]) -> frozenset[str]:
    """The values to hide, from an environment: every variable under SECRET_ENV_PREFIX (the Secret's
    copy) and every well-known credential variable."""
    values: set[str] = set()
    for name, value in environ.items():
        if name.startswith(SECRET_ENV_PREFIX) or CREDENTIAL_ENV.search(name):
            values |= _parts(value)
    return frozenset(values)


def redact(text: str, values: Iterable[str]) -> str:
    """`text` with each of `values` (longest first, so a URL goes before its password) and every
    URL's user info replaced by ***."""
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, REDACTED)
    return redact_userinfo(text)
