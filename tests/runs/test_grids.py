"""Named grids (sweeps/), budgets, run identity and ``python -m macpo.tools.sweeps status``."""

from __future__ import annotations

import itertools

import pytest
from hydra.errors import HydraException
from mlflow.tracking import MlflowClient

from macpo.runs import grids
from macpo.runs.checkpoints import RunLock, run_checkpoint_dir
from macpo.runs.identity import run_identity
from macpo.runs.tracking import prepare_store
from macpo.tools import sweeps
from macpo.train import validate
from tests.helpers import REPO, TINY, run_cli

SMAC = ("3s_vs_5z", "5m_vs_6m", "mmm2")
METHODS = ("qmix", "ow_qmix", "cw_qmix", "qplex", "vdac", "fop", "dop", "macpo")
#: the issue's grids: sweep → {key: values} (the cross product is the grid)
EXPECTED = {
    "fig1_replay": {"env": SMAC, "algo": ("macpo",),
                    "sampler": ("per", "pser", "discor", "remern", "macpo", "macpo_approx"), "seed": "0123"},
    "fig2_predator_prey": {"env": ("predator_prey",), "env.punishment": ("-0.5", "-2"), "method": METHODS,
                           "seed": "0123"},
    "fig2_predator_prey_all": {"env": ("predator_prey",), "env.punishment": ("0", "-0.5", "-1.5", "-2"),
                               "method": METHODS, "seed": "0123"},
    "fig3_smac_marl": {"env": SMAC, "method": METHODS, "seed": "0123"},
    "fig4_ablation": {"env": ("mmm2",), "algo": ("macpo",),
                      "sampler": ("macpo", "macpo_no_bellman", "macpo_no_value", "macpo_no_joint"), "seed": "012"},
    "demo": {"env": ("predator_prey_demo",), "budget": ("demo",), "method": ("qmix", "macpo"), "seed": "01"},
}  # fmt: skip


def expected_cells(name: str) -> list[str]:
    grid = EXPECTED[name]
    return [" ".join(f"{k}={v}" for k, v in zip(grid, values)) for values in itertools.product(*grid.values())]


def test_every_paper_grid_is_a_sweep_with_its_name():
    assert grids.sweep_names() == sorted(EXPECTED)
    for name in EXPECTED:
        assert sorted(grids.grid_cells(name)) == sorted(expected_cells(name)), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_job_of_every_grid_composes_and_validates(compose_cfg, name):
    """Each (env, algo/method, sampler) of a grid composes, names its sweep and passes validation."""
    params = grids.sweep_params(name)
    seen = set()
    for job in grids.grid_jobs(params):
        job = [o for o in job if not o.startswith("seed=")]
        if tuple(job) in seen:
            continue
        seen.add(tuple(job))
        cfg = compose_cfg([f"sweep={name}", *job])
        assert cfg.sweep_name == name
        validate(cfg)  # e.g. a sampler needing Q* runs on an algorithm that computes it
        chosen = dict(o.split("=", 1) for o in job)
        if "method" in chosen:  # a method pairs the algorithm with its sampler
            assert cfg.algo.name == chosen["method"]
            assert cfg.sampler.name == ("macpo" if chosen["method"] == "macpo" else "uniform")
        if "env.punishment" in chosen:
            assert float(cfg.env.punishment) == float(chosen["env.punishment"])


def test_unknown_sweep_names_the_valid_ones(compose_cfg):
    with pytest.raises(HydraException, match="sweep/fig4_ablatoin") as err:
        compose_cfg(["sweep=fig4_ablatoin"])
    assert "fig4_ablation" in str(err.value) and "fig1_replay" in str(err.value)
    with pytest.raises(ValueError, match="sweep= one of: .*fig1_replay, .*fig4_ablation"):
        grids.sweep_params("fig4")


def test_plus_sweep_is_refused_not_run_as_one_job(compose_cfg):
    with pytest.raises(HydraException, match="Multiple values for sweep"):
        compose_cfg(["+sweep=fig4_ablation"])


def test_sweep_without_multirun_is_a_config_error():
    res = run_cli(["-m", "macpo.train", "sweep=fig4_ablation", "logger.enabled=false"])
    assert res.returncode != 0
    assert "launch it with -m" in res.stderr


def test_command_line_values_restrict_the_grid():
    cells = grids.grid_cells("fig4_ablation", ["seed=1", "sampler=macpo,macpo_no_joint", "budget=smoke"])
    assert cells == ["env=mmm2 algo=macpo sampler=macpo seed=1", "env=mmm2 algo=macpo sampler=macpo_no_joint seed=1"]


@pytest.mark.parametrize("env, t_max", [("mmm2", 2_000_000), ("3s_vs_5z", 2_000_000), ("predator_prey", 2_050_000)])
def test_paper_budget(compose_cfg, env, t_max):
    cfg = compose_cfg([f"env={env}", "budget=paper"])
    assert cfg.t_max == t_max
    assert (cfg.test_interval, cfg.test_nepisode, cfg.batch_size) == (10_000, 32, 128)
    validate(cfg)


def test_smoke_budget_is_small_and_valid(compose_cfg):
    cfg = compose_cfg(["sweep=fig4_ablation", "env=mmm2", "algo=macpo", "sampler=macpo", "budget=smoke"])
    validate(cfg)
    assert cfg.t_max <= 5000 and cfg.buffer_size <= 100
    assert cfg.checkpoint_interval < cfg.t_max  # the smoke run also exercises checkpointing


def test_identity_ignores_where_results_go_but_not_what_is_run(compose_cfg):
    base = run_identity(compose_cfg(TINY))
    assert base == run_identity(compose_cfg(TINY))
    for same in ("logger.tracking_uri=sqlite:///elsewhere.db", "device=cpu", "progress_bar=true",
                 "checkpoint_interval=7", "checkpoint.dir=/tmp/x", "env.punishment=0.0"):  # fmt: skip
        assert run_identity(compose_cfg([*TINY, same])) == base, same
    for other in ("seed=1", "t_max=1501", "sampler=per", "env.punishment=-2", "sweep_name=fig2_predator_prey"):
        assert run_identity(compose_cfg([*TINY, other])) != base, other
    assert run_identity(compose_cfg([*TINY, "env.punishment=-2"])) == run_identity(
        compose_cfg([*TINY, "env.punishment=-2.0"])
    )


# ---- status ---------------------------------------------------------------------------------
def fake_run(client, experiment_id, cell, status, budget="smoke", identity=None):
    tags = {"sweep": "fig4_ablation", "sweep_cell": cell, "budget": budget, "t_max": "2000"}
    if identity:
        tags["identity"] = identity
    run = client.create_run(experiment_id, tags=tags)
    client.log_metric(run.info.run_id, "epsilon", 0.5, step=700)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_status_counts_done_running_interrupted_failed_missing(tmp_path, compose_cfg, capsys):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    experiment_id = prepare_store(uri, "macpo")
    cells = grids.grid_cells("fig4_ablation")
    fake_run(client, experiment_id, cells[0], "FINISHED")
    fake_run(client, experiment_id, cells[1], "FAILED")
    fake_run(client, experiment_id, cells[1], "FINISHED")  # a cell shows its best run
    fake_run(client, experiment_id, cells[2], "KILLED")
    fake_run(client, experiment_id, cells[3], "RUNNING", identity="dead")  # nobody holds its lock
    fake_run(client, experiment_id, cells[4], "RUNNING", identity="alive")
    fake_run(client, experiment_id, cells[5], "FAILED")
    fake_run(client, experiment_id, cells[0], "FINISHED", budget="paper")
    cfg = compose_cfg([f"logger.tracking_uri={uri}"])
    lock = RunLock(run_checkpoint_dir(cfg, "alive", REPO))
    assert lock.acquire(timeout=0)
    try:
        report, _ = grids.sweep_status("fig4_ablation", [f"logger.tracking_uri={uri}"])
        assert sweeps.main(["status", "fig4_ablation", "budget=smoke", f"logger.tracking_uri={uri}"]) == 0
    finally:
        lock.release()
    by_budget = {b.budget: b for b in report}
    assert set(by_budget) == {"smoke", "paper"}
    smoke = by_budget["smoke"]
    assert smoke.counts() == {"done": 2, "running": 1, "interrupted": 2, "failed": 1, "missing": 6}
    assert [c.state for c in smoke.cells[:6]] == ["done", "done", "interrupted", "interrupted", "running", "failed"]
    assert smoke.cells[3].env_steps == 700
    assert by_budget["paper"].counts()["done"] == 1
    printed = capsys.readouterr().out
    assert "budget=smoke: 12 runs: 2 done, 1 running, 2 interrupted, 1 failed, 6 missing" in printed
    assert "budget=paper" not in printed  # budget=smoke selects one
    assert f"missing     {cells[6]}" in printed


def test_status_of_an_unknown_sweep_fails_listing_the_valid_ones(capsys):
    assert sweeps.main(["status", "fig9"]) == 2
    assert "fig4_ablation" in capsys.readouterr().err


@pytest.mark.slow
def test_grid_runs_tagged_rerun_skips_and_status_shows_done(tmp_path):
    """A restricted fig2 grid end to end: two runs, tagged; the second launch trains nothing."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    grid = ["sweep=fig2_predator_prey", "budget=smoke", "env=predator_prey_small", "env.punishment=-2",
            "method=qmix,macpo", "seed=0", "t_max=400", "progress_bar=false", f"logger.tracking_uri={uri}"]  # fmt: skip
    for attempt in ("first", "again"):
        res = run_cli(["-m", "macpo.train", "-m", *grid, f"hydra.sweep.dir={tmp_path / attempt}"])
        assert res.returncode == 0, res.stderr[-3000:]
    assert (res.stdout + res.stderr).count("already FINISHED") == 2
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("macpo").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["sweep_cell"] for r in runs} == {
        "env=predator_prey_small env.punishment=-2 method=qmix seed=0",
        "env=predator_prey_small env.punishment=-2 method=macpo seed=0",
    }
    assert {(r.data.tags["sweep"], r.data.tags["budget"]) for r in runs} == {("fig2_predator_prey", "smoke")}
    assert {r.data.tags["algo"] + "/" + r.data.tags["sampler"] for r in runs} == {"qmix/uniform", "macpo/macpo"}
    status = run_cli(["-m", "macpo.tools.sweeps", "status", *grid])
    assert status.returncode == 0, status.stderr
    assert "budget=smoke: 2 runs: 2 done, 0 running, 0 interrupted, 0 failed, 0 missing" in status.stdout


@pytest.mark.parametrize("env", ["predator_prey", "3s_vs_5z", "5m_vs_6m", "mmm2"])
def test_smoke_budget_trains_on_every_paper_env(compose_cfg, env):
    """Warm-up (batch_size episodes, at most episode_limit steps each) leaves room for updates."""
    cfg = compose_cfg([f"env={env}", "budget=smoke"])
    from macpo.envs.factory import make_env

    limit = make_env(cfg.env, 1, "cpu", seed=0).env_info.episode_limit
    assert cfg.batch_size * limit <= cfg.t_max / 2
