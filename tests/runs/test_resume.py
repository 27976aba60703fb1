"""Resume without loss: checkpoints hold everything a run needs, and MLflow curves continue.

A run that dies (exception, SIGTERM, SIGKILL) and is launched again continues the same MLflow
run from its last checkpoint; steps logged between that checkpoint and the crash are not logged
twice. On CPU the continued run reproduces the uninterrupted one exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import macpo.runs.lifecycle as lifecycle
import macpo.train as train
from macpo.algos.base import MarlAlgorithm
from macpo.replay.samplers.per import PerSampler
from macpo.runs.checkpoints import (
    LAST_CKPT,
    SIDECAR,
    RunLock,
    capture_rng_states,
    restore_rng_states,
    run_checkpoint_dir,
)
from macpo.runs.identity import run_identity
from macpo.runs.tracking import ResumableMLFlowLogger, prepare_store
from tests.helpers import REPO, RESUMABLE, TINY, assert_continuous, metric_histories, store_uri, the_run


def signal_after_flush(monkeypatch, signum, at_step):
    """Make this process receive ``signum`` right after the first metric write at ≥ ``at_step``.

    Returns a dict that gets ``"at"``: the env step the signal was sent at.
    """
    original = MarlAlgorithm.flush_logs
    sent = {}

    def flush_then_signal(self):
        original(self)
        if not sent and self.env_steps >= at_step:
            sent["at"] = self.env_steps
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(MarlAlgorithm, "flush_logs", flush_then_signal)
    return sent


def resume_to_finish(cfg, uri):
    """Run the same configuration again: it must end FINISHED with a continuous history."""
    train.run(cfg)
    status, after = metric_histories(uri)
    assert status == "FINISHED"
    assert_continuous(after, cfg.log_interval, cfg.test_interval, cfg.t_max)
    return after


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="qmix-uniform"),
        pytest.param(["algo=macpo", "sampler=per", "sampler.mode=resample"], id="macpo-per-resample"),
    ],
)
def test_crashed_run_resumes_into_same_run_and_matches_uninterrupted(tmp_path, compose_cfg, crash_once_after, extra):
    whole_uri, resumed_uri = store_uri(tmp_path / "whole" / "m.db"), store_uri(tmp_path / "resumed" / "m.db")
    train.run(compose_cfg([*RESUMABLE, *extra, f"logger.tracking_uri={whole_uri}"]))

    cfg = compose_cfg([*RESUMABLE, *extra, f"logger.tracking_uri={resumed_uri}"])
    crash = crash_once_after(1900)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg)
    assert not crash["armed"]
    status, before = metric_histories(resumed_uri)
    assert status == "FAILED"
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), REPO)
    saved_at = json.loads((run_dir / SIDECAR).read_text())["env_steps"]
    assert 0 < saved_at < max(s for s, _ in before["train/return_mean"])  # steps past it will be replayed

    train.run(cfg)  # the same command again
    status, after = metric_histories(resumed_uri)
    assert status == "FINISHED"
    assert_continuous(after, cfg.log_interval, cfg.test_interval, cfg.t_max)
    for key, points in before.items():
        assert after[key][: len(points)] == points  # what was logged stays, nothing logged twice
    assert metric_histories(whole_uri)[1] == after  # exact continuation on CPU (RNG, buffer, priorities)
    assert not (run_dir / LAST_CKPT).exists() and (run_dir / "final.ckpt").exists()


def test_finished_run_is_skipped(tmp_path, compose_cfg, monkeypatch):
    cfg = compose_cfg([*TINY, "t_max=400", "device=cpu", f"logger.tracking_uri={store_uri(tmp_path / 'm.db')}"])
    first = train.run(cfg)
    monkeypatch.setattr(lifecycle, "build_run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert train.run(cfg) == pytest.approx(first)
    client, run = the_run(store_uri(tmp_path / "m.db"))  # still one run
    assert run.info.status == "FINISHED" and run.data.tags["identity"] == run_identity(cfg)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_checkpoints_marks_killed_and_resumes(tmp_path, compose_cfg, monkeypatch, signum):
    """SIGTERM (kill, SLURM) and a first Ctrl-C finish the step, write a checkpoint and exit."""
    uri = store_uri(tmp_path / "m.db")
    cfg = compose_cfg([*RESUMABLE, f"logger.tracking_uri={uri}"])
    original = MarlAlgorithm.flush_logs
    sent = signal_after_flush(monkeypatch, signum, at_step=1200)
    with pytest.raises(SystemExit) as stop:
        train.run(cfg)
    assert stop.value.code == 128 + signum
    status, before = metric_histories(uri)
    assert status == "KILLED"
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), REPO)
    assert json.loads((run_dir / SIDECAR).read_text())["env_steps"] == sent["at"]  # saved where it stopped

    monkeypatch.setattr(MarlAlgorithm, "flush_logs", original)
    resume_to_finish(cfg, uri)


def test_checkpoint_without_buffer_resumes_with_empty_buffer(tmp_path, compose_cfg, crash_once_after):
    uri = store_uri(tmp_path / "m.db")
    cfg = compose_cfg([*RESUMABLE, "checkpoint.save_buffer=false", f"logger.tracking_uri={uri}"])
    crash_once_after(1900)
    with pytest.raises(RuntimeError):
        train.run(cfg)
    ckpt = torch.load(run_checkpoint_dir(cfg, run_identity(cfg), REPO) / LAST_CKPT, weights_only=True)
    assert ckpt["ReplayDataModule"]["buffer"] is None
    assert ckpt["macpo_counters"]["env_steps"] > 0  # the schedule still resumes

    resume_to_finish(cfg, uri)


def test_a_run_held_by_another_process_is_not_started_twice(tmp_path, compose_cfg, monkeypatch):
    uri = store_uri(tmp_path / "m.db")
    cfg = compose_cfg([*TINY, "device=cpu", f"logger.tracking_uri={uri}"])
    lock = RunLock(run_checkpoint_dir(cfg, run_identity(cfg), REPO))
    assert lock.acquire(timeout=0)
    monkeypatch.setattr(lifecycle, "LOCK_WAIT_S", 0.1)
    try:
        assert np.isnan(train.run(cfg))
    finally:
        lock.release()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("macpo")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_rng_states_round_trip():
    gen = torch.Generator().manual_seed(3)
    state = capture_rng_states({"env": gen})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    restore_rng_states(state, {"env": gen})
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and torch.equal(first[3], again[3])
    with pytest.raises(ValueError, match="generators"):
        restore_rng_states(state, {})


def test_sampler_priorities_round_trip_and_reject_another_capacity():
    sampler = PerSampler(mode="resample")
    sampler.attach(8, "cpu")
    sampler.priorities.copy_(torch.arange(8.0))
    restored = PerSampler(mode="resample")
    restored.attach(8, "cpu")
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.priorities, sampler.priorities)
    other = PerSampler(mode="resample")
    other.attach(4, "cpu")
    with pytest.raises(ValueError, match="buffer_size"):
        other.load_state_dict(sampler.state_dict())


def test_continuing_logger_drops_steps_the_run_holds(tmp_path):
    uri = store_uri(tmp_path / "m.db")
    prepare_store(uri, "macpo")
    first = ResumableMLFlowLogger(experiment_name="macpo", tracking_uri=uri)
    for step in (0, 10, 20):
        first.log_metrics({"a": float(step)}, step=step)
    first.log_metrics({"b": 1.0}, step=10)
    first.finalize("failed")

    again = ResumableMLFlowLogger(experiment_name="macpo", tracking_uri=uri, run_id=first.run_id)
    assert MlflowClient(uri).get_run(first.run_id).info.status == "RUNNING"
    again.log_metrics({"a": -1.0, "b": 2.0}, step=20)  # a holds step 20, b does not
    again.log_metrics({"a": 30.0}, step=30)
    client = MlflowClient(uri)
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "a")] == [
        (0, 0.0), (10, 10.0), (20, 20.0), (30, 30.0)
    ]  # fmt: skip
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "b")] == [(10, 1.0), (20, 2.0)]


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_continues_the_same_run(tmp_path):
    """The issue's kill test: SIGKILL a real training process, run the same command again."""
    uri = store_uri(tmp_path / "m.db")
    log_interval, t_max = 500, 8000
    cmd = [sys.executable, "-m", "macpo.train", *TINY, f"t_max={t_max}", "checkpoint_interval=1000", "device=cpu",
           f"logger.tracking_uri={uri}", f"hydra.run.dir={tmp_path / 'hydra'}"]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    with open(tmp_path / "first.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    sidecars = list((tmp_path / "checkpoints" / "macpo").glob(f"*/{SIDECAR}"))
    killed_after = None
    while proc.poll() is None:  # until it logs past a checkpoint (then killed), or ends by itself at t_max
        time.sleep(0.2)
        sidecars = sidecars or list((tmp_path / "checkpoints" / "macpo").glob(f"*/{SIDECAR}"))
        if not sidecars:
            continue
        saved_at = json.loads(sidecars[0].read_text())["env_steps"]
        client, run = the_run(uri)
        logged = [m.step for m in client.get_metric_history(run.info.run_id, "epsilon")]
        if logged and max(logged) > saved_at:  # metrics exist past the checkpoint: they must not repeat
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_after = (saved_at, max(logged))
            break
    assert killed_after is not None, (tmp_path / "first.log").read_text()[-3000:]
    assert the_run(uri)[1].info.status == "RUNNING"  # died without a word

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout + again.stderr
    status, histories = metric_histories(uri)  # also asserts: one run, not two
    assert status == "FINISHED"
    assert_continuous(histories, log_interval, 500, t_max)
    steps = [s for s, _ in histories["epsilon"]]
    assert killed_after[1] in steps and any(s > killed_after[1] for s in steps)


def test_preemption_signal_checkpoints_before_its_handler_runs(tmp_path, compose_cfg, monkeypatch):
    """As under submitit: SIGUSR2 (time limit) → checkpoint at the end of the step → submitit's handler."""
    uri = store_uri(tmp_path / "m.db")
    cfg = compose_cfg([*RESUMABLE, f"logger.tracking_uri={uri}"])
    run_dir = run_checkpoint_dir(cfg, run_identity(cfg), REPO)
    calls = []

    def requeue_and_exit(signum, frame):  # what submitit does: requeue, then leave
        calls.append((signum, json.loads((run_dir / SIDECAR).read_text())["env_steps"]))
        raise SystemExit(-1)

    sent = signal_after_flush(monkeypatch, signal.SIGUSR2, at_step=1200)
    previous = signal.signal(signal.SIGUSR2, requeue_and_exit)
    try:
        with pytest.raises(SystemExit) as stop:
            train.run(cfg)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert stop.value.code == -1
    assert calls == [(signal.SIGUSR2, sent["at"])]  # called once, after the checkpoint of that very step
    assert metric_histories(uri)[0] == "KILLED"
