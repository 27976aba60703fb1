"""Grids on real clusters: SLURM (with accounting) and Ray, logging to an MLflow server.

``make test-cluster`` (``tests/cluster/run.sh``) installs what it needs, starts the cluster
(``conftest.py``) and runs this module. Every sweep is started at once (``sweeps``) and each test
waits for its own, so the whole module takes about as long as its longest sweep:

- a job cancelled with ``scancel``: the sweep ends with an error naming the cancellation, the
  run KILLED (not a hang: SLURM's accounting tells submitit the job is gone);
- ``sweep=demo budget=smoke`` (4 runs) through ``hydra/launcher=slurm`` and ``hydra/launcher=ray``
  with the launcher configs as shipped: every run FINISHED in the MLflow server, which
  ``analysis.figures`` and ``analysis.export`` then read;
- a job that raises: the sweep fails with the job's error, the run is FAILED;
- a job past its SLURM time limit: signalled, checkpointed, requeued, resumed in the same MLflow
  run, whose curves hold exactly one value per logged step, and FINISHED.

``MACPO_CLUSTER_PLANT_FAILURE=1`` makes every job of the SLURM grid raise (``jobs.FailingQMIX``),
to see this module fail as it does on a broken job: with the job's error in its report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.cluster.conftest import REPO, Cluster, Sweep, start_sweep
from tests.cluster.jobs import PLANTED_ERROR

pytestmark = pytest.mark.cluster

SMOKE_T_MAX, SMOKE_LOG_INTERVAL, SMOKE_TEST_INTERVAL = 4000, 500, 1000  # conf/budget/smoke.yaml
EPISODE_LIMIT = 50  # conf/env/predator_prey_demo.yaml: the env steps one collection adds with batch_size_run=1
DEMO_RUNS = {("macpo", "0"), ("macpo", "1"), ("qmix", "0"), ("qmix", "1")}  # sweeps/demo.yaml: (algo, seed)
ONE_RUN = ["env=predator_prey_demo", "budget=smoke", "method=qmix", "seed=0", "hydra/launcher=slurm"]
#: the SLURM grid's extra overrides when a failure is planted
PLANT = ["method=qmix", "algo._target_=tests.cluster.jobs.FailingQMIX"]
#: the preempted job's time limit and signal: SLURM checks time limits every 30 s and signals at the first
#: check within signal_delay_s + 30 s of the limit, so 50-80 s after the job starts: after its start-up,
#: before its paced run (PacedQMIX, 160 s) could end, and early enough to checkpoint and requeue
PREEMPTION_LIMIT_MIN, PREEMPTION_SIGNAL_S = 2, 40
#: seconds each sweep may take before its test fails (the machine may be shared and slow)
GRID_TIMEOUT_S, PREEMPTION_TIMEOUT_S, CANCEL_TIMEOUT_S = 600, 600, 240


@pytest.fixture(scope="session")
def sweeps(cluster: Cluster):
    plant = PLANT if os.environ.get("MACPO_CLUSTER_PLANT_FAILURE") == "1" else []
    started = {}
    try:
        # the longest first; with pacing, the preempted and the cancelled runs wait more than they compute
        started["preemption"] = start_sweep(cluster, "preemption", [
            *ONE_RUN, "algo._target_=tests.cluster.jobs.PacedQMIX", "batch_size_run=1",
            f"hydra.launcher.timeout_min={PREEMPTION_LIMIT_MIN}",
            f"hydra.launcher.signal_delay_s={PREEMPTION_SIGNAL_S}",
        ])  # fmt: skip
        started["cancelled"] = start_sweep(cluster, "cancelled", [
            *ONE_RUN, "algo._target_=tests.cluster.jobs.PacedQMIX", "batch_size_run=1", "t_max=1000000",
        ])  # fmt: skip
        started["failing"] = start_sweep(cluster, "failing", [*ONE_RUN, "algo._target_=tests.cluster.jobs.FailingQMIX"])
        started["slurm"] = start_sweep(cluster, "slurm", ["sweep=demo", "budget=smoke", *plant, "hydra/launcher=slurm"])
        started["ray"] = start_sweep(cluster, "ray", ["sweep=demo", "budget=smoke", "hydra/launcher=ray",
                                                      f"hydra.launcher.ray.init.address={cluster.ray_address}"])
        yield started
    finally:
        for sweep in started.values():
            sweep.stop()


def runs_of(cluster: Cluster, experiment: str) -> list:
    client = MlflowClient(cluster.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp is not None else []


def assert_grid_finished(cluster: Cluster, sweep: Sweep) -> list:
    code = sweep.wait(GRID_TIMEOUT_S)
    assert code == 0, f"the {sweep.name} grid failed\n{sweep.report()}"
    runs = runs_of(cluster, sweep.name)
    assert {(r.data.tags["algo"], r.data.tags["seed"]) for r in runs} == DEMO_RUNS and len(runs) == 4, sweep.report()
    assert {r.info.status for r in runs} == {"FINISHED"}, [(r.data.tags["algo"], r.info.status) for r in runs]
    assert {(r.data.tags["sweep"], r.data.tags["budget"]) for r in runs} == {("demo", "smoke")}
    for run in runs:
        steps = [m.step for m in MlflowClient(cluster.tracking_uri).get_metric_history(run.info.run_id,
                                                                                        "test/return_mean")]
        assert max(steps) >= SMOKE_T_MAX, f"run {run.info.run_id} ends its test curve at {max(steps)}"
    return runs


def sacct_states(cluster: Cluster, job_id: str, timeout_s: float = 60) -> list[str]:
    """The job's records in SLURM's accounting, oldest first (a requeued job has one per start),
    once the last is final (accounting hears of the job's end a moment after submitit)."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = cluster.slurm("sacct", "--duplicates", "--allocations", "--noheader", "--parsable2",
                            "--format=JobID,State", "--jobs", job_id)  # fmt: skip
        states = [line.split("|")[1].split()[0] for line in out.splitlines() if line.strip()]
        if states and states[-1] not in ("PENDING", "RUNNING", "COMPLETING") or time.monotonic() > deadline:
            return states
        time.sleep(1)


# ---- a cancelled job (first: cancelled early, the sweep notices early) ---------------------
def test_a_cancelled_job_ends_the_sweep_with_an_error(cluster, sweeps):
    sweep = sweeps["cancelled"]
    deadline = time.monotonic() + CANCEL_TIMEOUT_S
    while not any(r.info.status == "RUNNING" for r in runs_of(cluster, "cancelled")):  # training has begun
        assert sweep.proc.poll() is None and time.monotonic() < deadline, f"the run never started\n{sweep.report()}"
        time.sleep(2)
    time.sleep(5)  # a few paced steps
    (job_id,) = sweep.job_ids()
    cluster.slurm("scancel", job_id)
    code = sweep.wait(CANCEL_TIMEOUT_S)  # submitit reads the CANCELLED state from accounting: no hang
    assert code == 1, sweep.report()
    assert "error: a job of the grid ended without a result" in sweep.output(), sweep.report()
    assert "(state: CANCELLED" in sweep.output(), sweep.report()
    (run,) = runs_of(cluster, "cancelled")
    assert run.info.status == "KILLED", run.info.status  # SIGTERM: checkpoint written, run marked KILLED


# ---- the grids ----------------------------------------------------------------------------
def test_slurm_grid_finishes_every_run(cluster, sweeps):
    sweep = sweeps["slurm"]
    assert_grid_finished(cluster, sweep)
    jobs = sweep.job_ids()  # one array job, one task per run: <array>_0 ... <array>_3
    assert len(jobs) == 4 and len({job.split("_")[0] for job in jobs}) == 1, jobs
    assert {job: sacct_states(cluster, job) for job in jobs} == {job: ["COMPLETED"] for job in jobs}


def test_analysis_reads_the_grid_from_the_server(cluster, sweeps, tmp_path):
    assert sweeps["slurm"].wait(GRID_TIMEOUT_S) == 0, sweeps["slurm"].report()
    select = ["--tracking-uri", cluster.tracking_uri, "--experiment", "slurm", "--sweep", "demo", "--no-progress",
              "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    figures = subprocess.run([sys.executable, "-m", "analysis.figures", *select, "--out", str(tmp_path / "figures")],
                             cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert figures.returncode == 0, figures.stdout + figures.stderr
    assert (tmp_path / "figures" / "fig2_predator_prey.png").is_file(), figures.stdout
    out = tmp_path / "marl_eval.json"
    export = subprocess.run([sys.executable, "-m", "analysis.export", *select, "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert export.returncode == 0, export.stdout + export.stderr
    assert "wrote 4 run(s)" in export.stdout, export.stdout
    assert json.loads(out.read_text())


def test_ray_grid_finishes_every_run(cluster, sweeps):
    sweep = sweeps["ray"]
    assert_grid_finished(cluster, sweep)
    assert f"Connecting to existing Ray cluster at address: {cluster.ray_address}" in sweep.output(), sweep.report()


# ---- a job that raises -------------------------------------------------------------------
def test_a_job_that_raises_fails_the_sweep_with_its_error(cluster, sweeps):
    sweep = sweeps["failing"]
    code = sweep.wait(GRID_TIMEOUT_S)
    assert code != 0, sweep.report()
    assert PLANTED_ERROR in sweep.output(), sweep.report()
    (run,) = runs_of(cluster, "failing")
    assert run.info.status == "FAILED" and PLANTED_ERROR in run.data.tags["failure"]


# ---- preemption ---------------------------------------------------------------------------
def test_a_job_past_its_time_limit_is_requeued_and_resumes_in_the_same_run(cluster, sweeps):
    sweep = sweeps["preemption"]
    code = sweep.wait(PREEMPTION_TIMEOUT_S)
    assert code == 0, sweep.report()
    (job_id,) = sweep.job_ids()
    states = sacct_states(cluster, job_id)
    assert "REQUEUED" in states and states[-1] == "COMPLETED", states
    log = sweep.job_log(job_id)
    for step in ("Caught signal SIGUSR2", "this job is timed-out", "checkpoint written", "Requeued job", "resuming"):
        assert step in log, f"{step!r} missing from the job's log\n{sweep.report()}"

    (run,) = runs_of(cluster, "preemption")  # one MLflow run across every start of the job
    assert run.info.status == "FINISHED"
    client = MlflowClient(cluster.tracking_uri)
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(steps) == len(set(steps)), f"{key}: a step logged twice: {sorted(steps)}"
        if key.startswith("perf/"):
            continue  # throughput and CPU time: logged when a segment ends
        steps.sort()
        interval = SMOKE_TEST_INTERVAL if key.startswith("test/") else SMOKE_LOG_INTERVAL
        gaps = np.diff(steps)
        assert (gaps < interval + EPISODE_LIMIT).all(), f"{key}: a logged step is missing: {steps}"
        assert steps[0] <= interval + EPISODE_LIMIT and steps[-1] >= SMOKE_T_MAX, f"{key}: {steps}"
    final = cluster.dir / "checkpoints" / "preemption" / run.data.tags["identity"] / "final.ckpt"
    assert final.is_file(), f"no {final}"
