"""A checkpoint never runs code and is never trained on when it is damaged; a non-finite streak fails the run.

The issue's faults, reproduced: a pickle planted at the resume path (with a matching sidecar),
4 KiB of random bytes written into ``last.ckpt``, a truncated ``last.ckpt``, a checkpoint with
NaN weights. Each is moved to ``last.ckpt.bad`` with one warning, and the run restarts from
scratch into the same MLflow run and finishes with finite losses and no step logged twice.
"""

from __future__ import annotations

import json
import logging
import math
import os

import pytest
import torch
from mlflow.tracking import MlflowClient

import macpo.train as train
from macpo.algos.base import MarlAlgorithm
from macpo.algos.guard import NonFiniteUpdateError
from macpo.runs.checkpoints import LAST_CKPT, SIDECAR, check_checkpoint, run_checkpoint_dir, sha256_of
from macpo.runs.identity import run_identity
from tests.helpers import TINY, assert_continuous, crash_then_damage, metric_histories, store_uri

SHORT = [*TINY, "t_max=1600", "checkpoint_interval=400", "device=cpu"]


class PlantedPayload:
    """Unpickling this would create ``marker`` (what an attacker's pickle would do, harmlessly)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(run_dir, payload, mlflow_run_id=None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": payload}, run_dir / LAST_CKPT)
    meta = {"mlflow_run_id": mlflow_run_id, "identity": run_dir.name, "env_steps": 800,
            "sha256": sha256_of(run_dir / LAST_CKPT), "saved_at": "2025-01-01T00:00:00"}  # fmt: skip
    (run_dir / SIDECAR).write_text(json.dumps(meta))  # a matching checksum: the attacker can write it too


def warnings_about(caplog, path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(path) in r.getMessage()]


def test_planted_pickle_is_never_executed_and_the_run_completes(tmp_path, caplog):
    uri = store_uri(tmp_path / "m.db")
    cfg = train.compose([*SHORT, "t_max=400", f"logger.tracking_uri={uri}"])
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), tmp_path)
    marker = tmp_path / "pwned"
    plant(run_dir, PlantedPayload(str(marker)))
    with caplog.at_level(logging.WARNING):
        train.run(cfg)
    assert not marker.exists()  # the pickle's code never ran
    assert metric_histories(uri)[0] == "FINISHED"
    assert (run_dir / (LAST_CKPT + ".bad")).exists()
    assert len(warnings_about(caplog, run_dir / LAST_CKPT)) == 1
    assert "does not load safely" in warnings_about(caplog, run_dir / LAST_CKPT)[0]
    torch.load(run_dir / (LAST_CKPT + ".bad"), weights_only=False)  # the plant is real: an unsafe load runs it
    assert marker.exists()


def _random_bytes(path):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _nan_weights_with_a_matching_checksum(path):
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    state["state_dict"][name].fill_(float("nan"))
    torch.save(state, path)
    meta = json.loads((path.parent / SIDECAR).read_text())
    meta["sha256"] = sha256_of(path)
    (path.parent / SIDECAR).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, reason",
    [(_random_bytes, "does not match"), (_truncate, "does not match"),
     (_nan_weights_with_a_matching_checksum, "non-finite weights")],
    ids=["random-bytes", "truncated", "nan-weights"],
)  # fmt: skip
def test_damaged_checkpoint_is_set_aside_and_the_run_restarts_cleanly(tmp_path, caplog, crash_once_after, damage,
                                                                      reason):  # fmt: skip
    cfg, uri, run_dir, before = crash_then_damage(tmp_path, crash_once_after, SHORT, damage, LAST_CKPT)

    with caplog.at_level(logging.WARNING):
        train.run(cfg)  # the same command again
    found = warnings_about(caplog, run_dir / LAST_CKPT)
    assert len(found) == 1 and reason in found[0] and "restarts from scratch" in found[0]
    assert (run_dir / (LAST_CKPT + ".bad")).exists()
    status, after = metric_histories(uri)  # also: still one MLflow run
    assert status == "FINISHED"
    assert_continuous(after, cfg.log_interval, cfg.test_interval, cfg.t_max)
    for key, points in before.items():
        assert after[key][: len(points)] == points  # what was logged stays, nothing logged twice
    for key in ("loss", "grad_norm", "td_error_abs"):
        assert key in after and all(math.isfinite(v) for _, v in after[key]), key


def test_check_refuses_a_wrong_checksum_before_loading(tmp_path):
    path = tmp_path / LAST_CKPT
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert check_checkpoint(path, sha256_of(path)) is None
    assert "does not match" in check_checkpoint(path, "0" * 64)
    assert "no checksum" in check_checkpoint(path, None)


def test_nonfinite_streak_fails_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    uri = store_uri(tmp_path / "m.db")
    cfg = train.compose([*SHORT, "max_nonfinite_streak=3", f"logger.tracking_uri={uri}"])
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), tmp_path)
    original = MarlAlgorithm.training_step
    seen = {}

    def diverge_after_900(self, tick, batch_idx):
        if self.env_steps >= 900:  # what the algorithm's guard raises after a streak of skipped updates
            seen.setdefault("limit", self.loop.max_nonfinite_streak)
            seen["saved"] = json.loads((run_dir / SIDECAR).read_text())["env_steps"]
            raise NonFiniteUpdateError(step=self.env_steps, streak=self.loop.max_nonfinite_streak)
        return original(self, tick, batch_idx)

    monkeypatch.setattr(MarlAlgorithm, "training_step", diverge_after_900)
    with pytest.raises(NonFiniteUpdateError) as error:
        train.run(cfg)
    assert seen["limit"] == 3  # the config key reaches the algorithm
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("macpo").experiment_id])
    assert run.info.status == "FAILED"
    assert f"env step {error.value.step}" in run.data.tags["failure"]
    assert json.loads((run_dir / SIDECAR).read_text())["env_steps"] == seen["saved"] < error.value.step
    assert check_checkpoint(run_dir / LAST_CKPT, json.loads((run_dir / SIDECAR).read_text())["sha256"]) is None

    monkeypatch.setattr(MarlAlgorithm, "training_step", original)
    train.run(cfg)  # a rerun continues from the last good checkpoint
    assert metric_histories(uri)[0] == "FINISHED"
