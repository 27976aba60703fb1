"""A damaged ``last.json`` is a damaged checkpoint: set aside with one warning, the run restarts into
the same MLflow run and finishes; nothing crashes, nothing needs editing by hand.

``macpo.runs.checkpoints.read_sidecar`` is the one check of the sidecar's shape and types
(``SIDECAR_FIELDS``); whatever fails it goes through ``quarantine`` like a bad checksum.
"""

from __future__ import annotations

import json
import logging

import pytest

import macpo.train as train
from macpo.runs.checkpoints import LAST_CKPT, SIDECAR, read_sidecar, run_checkpoint_dir
from macpo.runs.identity import run_identity
from tests.helpers import TINY, assert_continuous, crash_then_damage, metric_histories, run_cli, store_uri

SHORT = [*TINY, "t_max=1600", "checkpoint_interval=400", "device=cpu"]
GOOD = {"mlflow_run_id": "0" * 32, "identity": "0123456789abcdef", "env_steps": 800, "sha256": "a" * 64,
        "saved_at": "2025-01-01T00:00:00"}  # fmt: skip


def _json(value):
    return lambda path: path.write_text(json.dumps(value))


def _folder(path):
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("{}")


@pytest.mark.parametrize(
    "damage, reason",
    [(_json([]), "holds a list"), (_json({**GOOD, "env_steps": "800"}), "env_steps"), (_folder, "unreadable")],
    ids=["a-list", "a-wrong-type", "a-folder"],
)  # fmt: skip
def test_a_damaged_sidecar_sets_the_checkpoint_aside_and_the_run_finishes(tmp_path, caplog, crash_once_after,
                                                                         damage, reason):  # fmt: skip
    cfg, uri, run_dir, before = crash_then_damage(tmp_path, crash_once_after, SHORT, damage, SIDECAR)

    with caplog.at_level(logging.WARNING):
        train.run(cfg)  # the same command again: no crash, no hand edit
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(run_dir / LAST_CKPT) in warnings[0] and SIDECAR in warnings[0] and reason in warnings[0]
    assert (run_dir / (LAST_CKPT + ".bad")).exists() and (run_dir / (SIDECAR + ".bad")).exists()
    assert not (run_dir / LAST_CKPT).exists()  # FINISHED: no resume file left
    status, after = metric_histories(uri)  # still one MLflow run
    assert status == "FINISHED"
    assert_continuous(after, cfg.log_interval, cfg.test_interval, cfg.t_max)
    for key, points in before.items():
        assert after[key][: len(points)] == points  # kept, and not logged twice


@pytest.mark.parametrize(
    "content, reason",
    [
        ("[]", "holds a list"),
        ("null", "holds a NoneType"),
        ('"last.ckpt"', "holds a str"),
        ("{}", "wrong keys"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "sha256"}), "missing ['sha256']"),
        (json.dumps({**GOOD, "extra": 1}), "unexpected ['extra']"),
        (json.dumps({**GOOD, "mlflow_run_id": 5}), "mlflow_run_id=5"),
        (json.dumps({**GOOD, "env_steps": True}), "env_steps=true"),
        (json.dumps({**GOOD, "env_steps": -1}), "env_steps=-1"),
        (json.dumps({**GOOD, "sha256": ["a"]}), "sha256="),
        (json.dumps({**GOOD, "sha256": "not-hex"}), "no valid checksum"),
        ("{not json", "unreadable (JSONDecodeError)"),
        (b"\xff\xfe\x00garbage", "unreadable"),
        ("[" * 100_000 + "]" * 100_000, "unreadable"),
    ],
)
def test_read_sidecar_accepts_exactly_the_written_shape(tmp_path, content, reason):
    path = tmp_path / SIDECAR
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match="its sidecar last.json") as error:
        read_sidecar(path)
    assert reason in str(error.value) and "\n" not in str(error.value)


def test_read_sidecar_returns_what_save_wrote(tmp_path):
    path = tmp_path / SIDECAR
    path.write_text(json.dumps(GOOD))
    assert read_sidecar(path) == GOOD
    path.write_text(json.dumps({**GOOD, "mlflow_run_id": None}))  # a run without a logger
    assert read_sidecar(path)["mlflow_run_id"] is None


def test_the_cli_rerun_warns_once_and_exits_0(tmp_path, crash_once_after):
    """The same, through ``python -m macpo.train``: exit code 0, one warning naming the checkpoint, no traceback."""
    uri = store_uri(tmp_path / "m.db")
    args = [*SHORT, f"logger.tracking_uri={uri}"]
    cfg = train.compose(args)
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), tmp_path)
    crash_once_after(1000)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg)
    (run_dir / SIDECAR).write_text("[]")
    res = run_cli(["-m", "macpo.train", *args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    warned = [line for line in (res.stdout + res.stderr).splitlines() if "is not resumed" in line]
    assert len(warned) == 1 and str(run_dir / LAST_CKPT) in warned[0] and "holds a list" in warned[0], warned
    assert metric_histories(uri)[0] == "FINISHED"
