"""Runs say what produced them: the code's commit, the machine, and the CPU time they cost."""

from __future__ import annotations

import os
import re

import pytest
from mlflow.tracking import MlflowClient

import macpo.train as train
from macpo.runs import provenance
from macpo.runs.lifecycle import run_tags
from macpo.runs.provenance import CPU_SECONDS_METRIC, CpuClock, code_commit
from tests.helpers import TINY


def test_run_tags_name_the_commit_and_the_machine(compose_cfg):
    tags = run_tags(compose_cfg(TINY))
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", tags["code.commit"]), tags["code.commit"]  # this is a checkout
    assert tags["code.commit"] == code_commit()
    assert tags["machine.cores"] == str(os.cpu_count())
    assert tags["machine.avx512_bf16"] in ("true", "false")
    assert tags["machine.cpu"]


def test_cpu_clock_adds_earlier_segments():
    clock = CpuClock(before=12.5)
    sum(i * i for i in range(200_000))  # burn some CPU
    assert clock.total() > 12.5


def run_cpu_seconds(uri: str) -> tuple[str, list[float]]:
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("macpo").experiment_id])
    history = sorted(client.get_metric_history(run.info.run_id, CPU_SECONDS_METRIC), key=lambda m: m.timestamp)
    return run.info.status, [m.value for m in history]


def test_cpu_seconds_are_summed_over_a_crash_and_its_resume(tmp_path, compose_cfg, crash_once_after, monkeypatch):
    cfg = compose_cfg([*TINY, "t_max=3000", "checkpoint_interval=700", "device=cpu",
                       f"logger.tracking_uri=sqlite:///{tmp_path / 'm.db'}"])  # fmt: skip
    crash_once_after(1900)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg)
    status, crashed = run_cpu_seconds(f"sqlite:///{tmp_path / 'm.db'}")
    assert status == "FAILED" and len(crashed) == 1 and crashed[0] > 0  # the failed segment's cost is kept

    monkeypatch.setattr(provenance.time, "process_time", lambda: 100.0)  # the resumed segment costs 0 s
    train.run(cfg)  # resumes the same MLflow run
    status, both = run_cpu_seconds(f"sqlite:///{tmp_path / 'm.db'}")
    assert status == "FINISHED" and both == pytest.approx([crashed[0], crashed[0]])  # carries the first segment
