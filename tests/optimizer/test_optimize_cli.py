"""The CLI contract the operator's Job builder relies on."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modeldeploy.cli import main
from modeldeploy.cli import optimize as cli
from modeldeploy.contract.failures import Failure, failure_table_markdown


def test_register_adds_the_optimize_subcommand_with_every_flag():
    parser = argparse.ArgumentParser(prog="modeldeploy")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "optimize", "--source", "s3://b/m.keras", "--format", "keras", "--sha256", "0" * 64,
            "--output", "/mnt/models/digits", "--version", "3", "--dense-sparsity", "0.8",
            "--conv-sparsity", "0.5", "--fine-tune-epochs", "2", "--train-data", "s3://b/train.npz",
            "--quantization", "int8", "--eval-data", "s3://b/eval.npz", "--metric", "accuracy",
            "--max-accuracy-drop", "0.01", "--pvc-root", "/mnt/pvc",
            "--termination-message-path", "/dev/termination-log", "--log-format", "json",
        ]
    )  # fmt: skip
    assert args.command == "optimize" and callable(args.func)
    assert (args.version, args.dense_sparsity, args.quantization, args.log_format) == ("3", "0.8", "int8", "json")


def test_importing_the_cli_does_not_import_tensorflow():
    code = (
        "import sys; import modeldeploy.cli as c; "
        "c.build_parser(); "
        "heavy = [m for m in ('tensorflow', 'keras', 'boto3') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_real_process_prints_one_stderr_line_even_after_tensorflow_loaded(tmp_path):
    """TensorFlow's C++ logs go to fd 2 on import; the CLI routes them to stdout."""
    (tmp_path / "m.keras").write_bytes(b"PK\x03\x04 but not really a zip")
    termination = tmp_path / "termination-log"
    process = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "optimize", "--source", str(tmp_path / "m.keras"),
         "--output", str(tmp_path / "out"), "--version", "1", "--termination-message-path", str(termination),
         "--log-format", "json"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert process.returncode == Failure.MODEL_LOAD_FAILED.exit_code, process.stderr
    assert process.stderr.count("\n") == 1, process.stderr
    assert process.stderr.startswith("modeldeploy optimize: ModelLoadFailed: model ")
    assert json.loads(termination.read_text())["reason"] == "ModelLoadFailed"
    events = [json.loads(line) for line in process.stdout.splitlines()]  # native lines too are JSON
    assert next(e["message"] for e in events if e.get("stage") == "load") == "started"
    assert any(e["level"] == "error" and e["stage"] == "load" for e in events)


def test_json_progress_log_times_every_stage(optimize, mlp, tmp_path):
    run = optimize(
        "--source", mlp.keras_path, "--output", tmp_path / "out", "--version", "1", "--log-format", "json",
        "--quantization", "dynamic", "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    finished = {e["stage"]: e["seconds"] for e in events if e.get("message", "").startswith("done in")}
    assert list(finished) == ["fetch", "load", "data", "quantize", "check", "evaluate", "bundle", "size", "export"]
    report = json.loads((tmp_path / "out" / "1" / "report.json").read_text())
    # Every stage but the one that writes report.json and publishes it (issue 11: "size" was missing).
    assert list(report["stages"]) == list(finished)[:-1]
    assert report["stages"]["size"] == finished["size"]


def test_reason_table_lists_every_reason():
    table = failure_table_markdown()
    for reason in Failure:
        assert f"| {reason.exit_code} | {reason.value} |" in table


@pytest.mark.parametrize("flag", ["--help"])
def test_help_lists_the_contract(flag, capsys):
    with pytest.raises(SystemExit):
        main(["optimize", flag])
    text = capsys.readouterr().out
    flags = (
        "--source --format --sha256 --output --version --dense-sparsity --conv-sparsity --fine-tune-epochs "
        "--train-data --quantization --eval-data --metric --max-accuracy-drop --pvc-root "
        "--termination-message-path --log-format"
    )
    for name in flags.split():
        assert name in text


def test_sigterm_cleans_up_and_reports_terminated(tmp_path):
    """A deleted Pod gets SIGTERM: the run stops, publishes nothing, and says why."""
    import http.server
    import threading
    import time

    release = threading.Event()

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            release.wait(30)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    termination = tmp_path / "termination-log"
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy.cli", "optimize",
             "--source", f"http://127.0.0.1:{server.server_address[1]}/m.keras",
             "--output", str(tmp_path / "out"), "--version", "1", "--termination-message-path", str(termination)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        assert "fetch: started" in process.stdout.readline()
        time.sleep(0.3)
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert process.returncode == Failure.TERMINATED.exit_code == 143, stderr
    assert stderr.startswith("modeldeploy optimize: Terminated: ") and stderr.count("\n") == 1
    assert json.loads(termination.read_text())["reason"] == "Terminated"
    assert not (tmp_path / "out").exists()


def test_reference_entry_point_writes_models_and_datasets(tmp_path, capsys):
    from modeldeploy.optimize import reference

    assert reference.main(["--out", str(tmp_path), "--epochs", "1"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [f"{m}{suffix}" for m in ("mlp", "cnn") for suffix in (".keras", ".h5", "-train.npz", "-eval.npz")]
        + ["reference.json"]
    )
    manifest = json.loads((tmp_path / "reference.json").read_text())
    assert manifest["models"]["mlp"]["params"] == 301_066
    with np.load(tmp_path / "cnn-eval.npz") as data:
        assert data["x"].shape[1:] == (8, 8, 1) and len(data["x"]) == len(data["y"]) == 360
    assert "mlp:" in capsys.readouterr().out


def test_json_log_format_keeps_native_log_lines_out_of_stdout(mlp, tmp_path):
    """Issue 11: TensorFlow's C++ log lines used to land between the JSON records on stdout."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # TensorFlow at its chattiest: every native line must still be wrapped
    process = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "optimize", "--source", str(mlp.keras_path),
         "--output", str(out), "--version", "1", "--quantization", "int8", "--train-data", str(mlp.train_path),
         "--termination-message-path", "", "--log-format", "json"],
        check=False, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    records = [json.loads(line) for line in process.stdout.splitlines()]  # every line is one JSON object
    assert all(isinstance(record, dict) and "message" in record for record in records)
    native = [record for record in records if record["logger"] != "modeldeploy.optimize"]
    assert native, "TensorFlow at log level 0 says something; it must arrive wrapped, not lost"
    assert records[-1]["message"].startswith("published ")


def test_the_termination_message_defaults_to_kubernetes_path_only_in_a_pod(monkeypatch, tmp_path):
    """Issue 11: run by hand, the default /dev/termination-log used to be written on the laptop."""
    from modeldeploy.cli import build_parser
    from modeldeploy.contract.layout import TERMINATION_MESSAGE_PATH
    from modeldeploy.optimize.options import options_from_args

    argv = ["optimize", "--source", "m.keras", "--output", str(tmp_path), "--version", "1"]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert options_from_args(build_parser().parse_args(argv)).termination_message_path is None
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    in_pod = options_from_args(build_parser().parse_args(argv))
    assert in_pod.termination_message_path == Path(str(TERMINATION_MESSAGE_PATH))
    explicit = options_from_args(build_parser().parse_args([*argv, "--termination-message-path", ""]))
    assert explicit.termination_message_path is None  # '' disables it, in a pod too


def test_tensorflow_python_log_records_are_progress_records(optimize, mlp, tmp_path, monkeypatch):
    """TensorFlow's Python logger (e.g. INFO "Assets written to ..." when the baseline SavedModel is
    exported) writes through the progress log: a JSON record of logger "tensorflow" on stdout, and
    stderr stays empty. Its own handler, bound to the sys.stderr of its first use (here a stream
    closed since, as a test runner leaves it), used to print a "--- Logging error ---" traceback
    onto the stream kept for the one failure line."""
    import logging

    import tensorflow as tf

    logger = tf.get_logger()
    closed = open(os.devnull, "w")  # noqa: SIM115
    closed.close()
    monkeypatch.setattr(logger, "handlers", [logging.StreamHandler(closed)])
    monkeypatch.setattr(logger, "level", logging.INFO)
    run = optimize(
        "--source", mlp.keras_path, "--output", tmp_path / "out", "--version", "1", "--log-format", "json",
        "--quantization", "dynamic", "--eval-data", mlp.eval_path,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.stderr == ""
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert any(e["logger"] == "tensorflow" and e["message"].startswith("Assets written to") for e in events), events
    assert logger.handlers and isinstance(logger.handlers[0], logging.StreamHandler), "restored after the run"
