"""analysis.results: a grid's finished runs exported with their provenance, merged across stores, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from marl_eval.utils.data_processing_utils import data_process_pipeline

from analysis.export import EXPORTED_METRICS
from analysis.load import COLUMNS, load_runs
from analysis.results import (
    Grid,
    MergeConflict,
    ResultsFileError,
    export_grid,
    main,
    read_results,
    results_points,
    run_records,
)
from tests.analysis.results_store import INTERVAL, MACHINE, T_MAX, FakeRun, log_runs

EXPERIMENT = "results"
GRID_A = Grid("fig2_predator_prey", "results", punishment=-0.5)


def pp(algo: str, seed: int, final: float, **kw) -> FakeRun:
    sampler = "macpo" if algo == "macpo" else "uniform"
    return FakeRun("fig2_predator_prey", "predator_prey", algo, sampler, seed, final, **{"punishment": -0.5, **kw})


IN_GRID = [pp("qmix", s, 4.0 + s, cpu_seconds=1000.0 + s) for s in (0, 1, 2)] + [
    pp("macpo", s, 7.0 + s, precision="bf16-mixed") for s in (0, 1)
]
OUTSIDE = [
    pp("qmix", 0, 1.0, punishment=-2.0),  # another cut of the sweep
    pp("qmix", 5, 1.0, status="RUNNING"),  # not finished
    pp("qmix", 6, 1.0, status="FAILED"),
    pp("qmix", 7, 1.0, status="KILLED"),
    pp("qmix", 0, 1.0, budget="demo"),  # another budget
    FakeRun("fig2_predator_prey_all", "predator_prey", "qmix", "uniform", 0, 1.0, punishment=-0.5),  # another sweep
]


def store_with(tmp_path: Path, name: str, runs: list[FakeRun]) -> str:
    uri = f"sqlite:///{tmp_path / name}"
    log_runs(uri, EXPERIMENT, runs)
    return uri


def export(uri: str, out: Path, grid: Grid = GRID_A, **kw):
    return export_grid(uri, EXPERIMENT, grid, out, cache_dir=None, command=f"export {uri}", **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return store_with(tmp_path_factory.mktemp("store"), "mlflow.db", IN_GRID + OUTSIDE)


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results") / "grid.json"
    export(store, out)
    return out


def test_only_finished_runs_of_the_grid_with_their_provenance(exported):
    results = read_results(exported)
    assert set(results.runs) == {run.identity for run in IN_GRID}
    for run in IN_GRID:
        record = results.runs[run.identity]
        assert record["status"] == "FINISHED"
        assert record["place"] == ["predator_prey", "predator_prey_p-0.5", run.algo, str(run.seed)]
        tags = record["tags"]
        assert tags["budget"] == "results" and tags["t_max"] == str(T_MAX) and tags["seed"] == str(run.seed)
        assert tags["sweep"] == "fig2_predator_prey" and tags["sweep_cell"] == run.tags()["sweep_cell"]
        assert tags["code.commit"] == run.commit
        assert {k: tags[k] for k in MACHINE} == MACHINE
        assert record["params"]["trainer/precision"] == run.precision
        assert record["params"]["test_interval"] == str(INTERVAL)
        assert record["metrics"]["perf/cpu_seconds"] == run.cpu_seconds  # the last (total) value, not the first
        curve = results.curve(run.identity)
        points = [(entry["step_count"], entry["return"][0]) for key, entry in curve.items() if key.startswith("step_")]
        assert points == run.curve()  # JSON keeps floats exactly
        assert curve["absolute_metrics"] == {"return": [pytest.approx(run.final)]}


def test_smac_runs_carry_the_simulator_version(tmp_path):
    runs = [FakeRun("fig1_replay", "5m_vs_6m", "macpo", s, 0, 0.5) for s in ("macpo", "per")]
    uri = store_with(tmp_path, "smac.db", runs)
    out = tmp_path / "b.json"
    export(uri, out, Grid("fig1_replay", "results", map_name="5m_vs_6m"))
    results = read_results(out)
    assert {tuple(r["place"][:3]) for r in results.runs.values()} == {
        ("smac_lite_v3", "5m_vs_6m", "macpo"), ("smac_lite_v3", "5m_vs_6m", "macpo+per"),
    }  # fmt: skip
    assert {r["tags"]["env.sim_version"] for r in results.runs.values()} == {"3"}
    assert set(run_records(results)["simulator"]) == {"lite v3"}
    entry = results.marl_eval["smac_lite_v3"]["5m_vs_6m"]["macpo"]["0"]["step_10"]
    assert set(entry) == {"step_count", "return", "win_rate"}


def test_no_per_update_metrics_and_the_file_is_small(exported):
    text = exported.read_text()
    assert "loss" not in text
    evaluations = T_MAX // INTERVAL + 1
    data = json.loads(text)
    for algos in data["marl_eval"]["predator_prey"].values():
        for seeds in algos.values():
            for curve in seeds.values():
                assert len(curve) == evaluations + 1  # the evaluations and absolute_metrics
    assert len(text) < 4_000 * len(IN_GRID)  # a few kilobytes a run


def test_marl_eval_reads_the_curves(exported):
    raw = json.loads(exported.read_text())["marl_eval"]
    processed = data_process_pipeline(raw_data=raw, metrics_to_normalize=[])
    assert "extra" in processed, "marl-eval rejected the data"
    assert processed["extra"]["number_of_steps"] == T_MAX // INTERVAL + 1


def test_read_back_is_the_stores_frame(store, exported):
    from_store = load_runs(store, EXPERIMENT, sweep="fig2_predator_prey", metrics=list(EXPORTED_METRICS),
                           statuses=["FINISHED"], cache_dir=None, progress=False)  # fmt: skip
    from_store = from_store[from_store["run_id"].isin(set(read_results(exported).runs[r.identity]["run_id"]
                                                          for r in IN_GRID))]  # fmt: skip
    read_back = results_points(read_results(exported))
    assert list(read_back.columns) == list(COLUMNS)
    key = ["run_id", "metric", "step"]
    pd.testing.assert_frame_equal(
        read_back.sort_values(key).reset_index(drop=True), from_store.sort_values(key).reset_index(drop=True)
    )


def test_merge_adds_new_runs_keeps_old_ones_and_refuses_changed_ones(tmp_path):
    out = tmp_path / "grid.json"
    first, second = IN_GRID[:2], IN_GRID[2:]
    summary, _ = export(store_with(tmp_path, "one.db", first), out)
    assert sorted(summary.added) == sorted(r.identity for r in first)
    before = read_results(out)

    summary, _ = export(store_with(tmp_path, "two.db", second), out)  # another session, another store
    assert sorted(summary.added) == sorted(r.identity for r in second)
    assert sorted(summary.kept) == sorted(r.identity for r in first)
    after = read_results(out)
    for run in first:  # untouched
        assert after.runs[run.identity] == before.runs[run.identity]
        assert after.curve(run.identity) == before.curve(run.identity)
    assert len(after.written_by) == 2

    text = out.read_text()
    summary, _ = export(str(after.written_by[0]).removeprefix("export "), out)  # the first store again
    assert sorted(summary.unchanged) == sorted(r.identity for r in first) and not summary.added
    assert out.read_text() == text  # nothing to add: the file is not rewritten

    rerun = FakeRun(**{**vars(first[0]), "final": first[0].final + 3})  # same configuration, other numbers
    again = store_with(tmp_path, "three.db", [rerun])
    with pytest.raises(MergeConflict, match=f"identity {rerun.identity}.*differing in .*run_id.*test curve"):
        export(again, out)
    assert out.read_text() == text  # refused: nothing written

    summary, _ = export(again, out, replace=True)
    assert summary.replaced == [rerun.identity]
    replaced = read_results(out)
    assert replaced.curve(rerun.identity)["absolute_metrics"]["return"] == [pytest.approx(rerun.final)]
    assert all(replaced.runs[r.identity] == after.runs[r.identity] for r in IN_GRID[1:])


def test_another_configuration_in_a_taken_place_is_refused(tmp_path, exported):
    out = tmp_path / "grid.json"
    out.write_text(exported.read_text())
    other = FakeRun(**{**vars(IN_GRID[0]), "salt": "lr=1e-3"})  # the same cell, another identity
    assert other.identity != IN_GRID[0].identity
    with pytest.raises(MergeConflict, match="predator_prey_p-0.5/qmix/0: held by identity"):
        export(store_with(tmp_path, "other.db", [other]), out)


def test_a_file_edited_by_hand_or_of_another_grid_is_refused(tmp_path, store, exported):
    out = tmp_path / "grid.json"
    out.write_text(exported.read_text().replace('"seed": "1"', '"seed": "4"', 1))
    with pytest.raises(ResultsFileError, match="checksum mismatch"):
        read_results(out)
    with pytest.raises(ResultsFileError, match="checksum mismatch"):
        export(store, out)

    out.write_text(exported.read_text())
    with pytest.raises(ValueError, match="the file holds grid fig2_predator_prey \\(p=-0.5"):
        export(store, out, Grid("fig2_predator_prey", "results", punishment=-2.0))


def test_a_run_shared_with_another_grid_joins_it(tmp_path):
    shared = FakeRun("fig1_replay", "5m_vs_6m", "macpo", "macpo", 0, 0.6)
    runs = [shared, FakeRun("fig1_replay", "5m_vs_6m", "macpo", "per", 0, 0.3),
            FakeRun("fig3_smac_marl", "5m_vs_6m", "qmix", "uniform", 0, 0.4)]  # fmt: skip
    uri = store_with(tmp_path, "shared.db", runs)
    out = tmp_path / "d.json"
    grid = Grid("fig3_smac_marl", "results", map_name="5m_vs_6m")
    export(uri, out, grid)
    summary, _ = export(uri, out, grid, sweep="fig1_replay", algo="macpo", sampler="macpo")
    assert summary.added == [shared.identity]
    results = read_results(out)
    assert results.runs[shared.identity]["tags"]["sweep"] == "fig1_replay"  # the file keeps where it came from
    points = results_points(results)
    assert set(points["sweep"]) == {"fig3_smac_marl"} and set(points["algo"]) == {"qmix", "macpo"}


def test_cli_default_file_command_and_errors(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--tracking-uri", store, "--experiment", EXPERIMENT, "--sweep", "fig2_predator_prey",
            "--budget", "results", "--punishment", "-0.5", "--no-cache"]  # fmt: skip
    assert main(args) == 0
    out = tmp_path / "results" / "fig2_predator_prey_p-0.5.json"
    assert f"{len(IN_GRID)} run(s) added" in capsys.readouterr().out
    text = out.read_text()
    assert str(Path(store.removeprefix("sqlite:///")).parent) not in text  # no folder of this machine
    (command,) = read_results(out).written_by
    assert command.startswith("python -m analysis.results --tracking-uri 'sqlite:///<store>/mlflow.db'")
    assert "--punishment -0.5" in command

    assert main([*args[:-2], "-1.5", "--no-cache"]) == 1
    assert "no FINISHED runs of fig2_predator_prey (p=-1.5, budget=results)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--map", "5m_vs_6m"])
