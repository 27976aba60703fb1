"""The analysis package against a real MLflow store: loading, caching, figures, tables, CLI.

The store is built with the MLflow client API, following the schema the training code logs
(tags env/algo/sampler/seed/sweep/punishment/t_max, metrics keyed by env steps), with final
values chosen so the tables can be checked against numbers worked out by hand below.

Swapping the store: tests that only need *a* store take the ``store`` fixture; override it
(e.g. with one built by running ``python -m macpo.train``) and they check that store. Tests
that compare against hand-computed numbers take ``synthetic_store``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from rliable import metrics as rly_metrics

from analysis import load as load_module
from analysis.curves import align_runs, learning_curves, mean_and_ci, step_grid
from analysis.figures import (
    MissingRunsError,
    ablation_figure,
    main,
    predator_prey_figure,
    replay_figure,
    smac_marl_figure,
    write_report,
)
from analysis.load import COLUMNS, load_runs
from analysis.selection import FIG1_REPLAY, FIG2_PREDATOR_PREY, FIG3_SMAC_MARL, FIG4_ABLATION, select_runs
from analysis.style import method_colour
from analysis.tables import (
    ALL_TASKS,
    final_performance_table,
    final_scores,
    headlines,
    improvement_table,
    iqm,
    probability_of_improvement,
)
from tests.helpers import EXPERIMENT, T_MAX, TEST_INTERVAL, LoggedRun, log_store, synthetic_runs

REPS = 400  # bootstrap resamples: enough for the hand-checkable CIs below, fast on 2 cores


# --------------------------------------------------------------------------- the store


@dataclass
class StoreUnderTest:
    """A store to analyse; `runs` (what was logged, by run id) is None for a store built by training."""

    tracking_uri: str
    experiment: str
    path: Path | None
    runs: dict[str, LoggedRun] | None


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> StoreUnderTest:
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    return StoreUnderTest(uri, EXPERIMENT, path, log_store(uri, EXPERIMENT, synthetic_runs()))


@pytest.fixture(scope="module")
def store(synthetic_store) -> StoreUnderTest:
    """The store the generic tests read; override to check another source."""
    return synthetic_store


@pytest.fixture(scope="module")
def points(synthetic_store) -> pd.DataFrame:
    """Finished and running runs (``--status FINISHED,RUNNING``), every metric."""
    return load_runs(
        synthetic_store.tracking_uri,
        EXPERIMENT,
        statuses=["FINISHED", "RUNNING"],
        cache_dir=None,
        progress=False,
    )


@pytest.fixture
def store_copy(synthetic_store, tmp_path) -> StoreUnderTest:
    """A private copy of the synthetic store, for tests that write to it."""
    path = tmp_path / "copy.db"
    shutil.copyfile(synthetic_store.path, path)
    return StoreUnderTest(f"sqlite:///{path}", EXPERIMENT, path, synthetic_store.runs)


def run_id_of(store: StoreUnderTest, **tags) -> str:
    matches = [rid for rid, run in store.runs.items() if all(run.tags.get(k) == v for k, v in tags.items())]
    assert len(matches) == 1, tags
    return matches[0]


# --------------------------------------------------------------------------- loading


def test_frame_has_one_row_per_logged_point(store):
    """Every point MLflow holds (read back through get_metric_history) is one row, with its tags."""
    frame = load_runs(store.tracking_uri, store.experiment, cache_dir=None, progress=False)
    assert list(frame.columns) == list(COLUMNS)
    client = MlflowClient(tracking_uri=store.tracking_uri)
    experiment_id = client.get_experiment_by_name(store.experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    assert set(frame["run_id"]) == {r.info.run_id for r in runs}
    for run in runs:
        mine = frame[frame["run_id"] == run.info.run_id]
        assert set(mine["env"]) == {run.data.tags["env"]}
        assert set(mine["status"]) == {run.info.status}
        assert set(mine["seed"]) == {int(run.data.tags["seed"])}
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            got = mine[mine["metric"] == key].sort_values("step")
            expected = sorted((m.step, m.value) for m in history)
            assert list(zip(got["step"], got["value"])) == expected


def test_frame_matches_what_was_logged(synthetic_store):
    frame = load_runs(synthetic_store.tracking_uri, EXPERIMENT, cache_dir=None, progress=False)
    expected_rows = sum(len(p) for run in synthetic_store.runs.values() for p in run.points.values())
    assert len(frame) == expected_rows
    rid = run_id_of(synthetic_store, sweep="demo", algo="qmix", seed="2", punishment="-2.0")
    row = frame[(frame["run_id"] == rid) & (frame["metric"] == "test/return_mean")].iloc[-1]
    assert row["punishment"] == -2.0 and row["seed"] == 2 and row["t_max"] == T_MAX
    assert row["step"] == 10 * TEST_INTERVAL + 32 and row["value"] == pytest.approx(2.0)
    assert frame.loc[frame["env"] == "mmm2", "punishment"].isna().all()


def test_tag_status_and_metric_filters(synthetic_store):
    uri = synthetic_store.tracking_uri
    fig1 = load_runs(uri, EXPERIMENT, sweep="fig1_replay", cache_dir=None, progress=False)
    assert set(fig1["sweep"]) == {"fig1_replay"} and fig1["run_id"].nunique() == 10
    two_maps = load_runs(
        uri, EXPERIMENT, env=["mmm2", "3s_vs_5z"], sampler="per", statuses=["FINISHED"], cache_dir=None, progress=False
    )
    assert set(two_maps["env"]) == {"mmm2", "3s_vs_5z"}
    assert set(two_maps["sampler"]) == {"per"} and set(two_maps["status"]) == {"FINISHED"}
    assert two_maps["run_id"].nunique() == 4  # the RUNNING and FAILED runs are left out
    qmix = load_runs(uri, EXPERIMENT, algo="qmix", metrics=["test/*"], cache_dir=None, progress=False)
    assert set(qmix["algo"]) == {"qmix"}
    assert set(qmix["metric"]) == {"test/return_mean", "test/battle_won_mean"}
    exact = load_runs(uri, EXPERIMENT, algo="qmix", metrics=["loss"], cache_dir=None, progress=False)
    assert set(exact["metric"]) == {"loss"}
    nothing = load_runs(uri, EXPERIMENT, sweep="no_such_sweep", cache_dir=None, progress=False)
    assert nothing.empty and list(nothing.columns) == list(COLUMNS)


def test_sql_and_api_reads_agree(synthetic_store):
    kwargs = dict(sweep="fig4_ablation", cache_dir=None, progress=False)
    by_sql = load_runs(synthetic_store.tracking_uri, EXPERIMENT, method="sql", **kwargs)
    by_api = load_runs(synthetic_store.tracking_uri, EXPERIMENT, method="api", **kwargs)
    assert len(by_sql) > 0
    pd.testing.assert_frame_equal(by_sql, by_api)


def test_bad_store_experiment_or_method_is_a_clear_error(synthetic_store, tmp_path):
    with pytest.raises(ValueError, match="--experiment.*'nope'"):
        load_runs(synthetic_store.tracking_uri, "nope", cache_dir=None, progress=False)
    missing = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(ValueError, match="--tracking-uri.*no MLflow store"):
        load_runs(missing, EXPERIMENT, cache_dir=None, progress=False)
    assert not (tmp_path / "absent.db").exists()  # we did not create an empty store
    with pytest.raises(ValueError, match="method="):
        load_runs(synthetic_store.tracking_uri, EXPERIMENT, method="bulk", progress=False)


@pytest.mark.parametrize("method", ["sql", "api"])
def test_cache_skips_history_reads_until_a_run_changes(store_copy, tmp_path, monkeypatch, method):
    reader_name = "_sql_histories" if method == "sql" else "_api_histories"
    real_reader = getattr(load_module, reader_name)
    reads: list[list[str]] = []

    def counting_reader(*args, **kwargs):
        run_ids = args[1] if method == "sql" else args[2]
        reads.append(list(run_ids))
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(load_module, reader_name, counting_reader)
    kwargs = dict(sweep="fig4_ablation", cache_dir=tmp_path / "cache", method=method, progress=False)
    first = load_runs(store_copy.tracking_uri, EXPERIMENT, **kwargs)
    assert len(reads) == 1 and len(reads[0]) == 4

    second = load_runs(store_copy.tracking_uri, EXPERIMENT, **kwargs)
    assert len(reads) == 1  # nothing read from the store again
    pd.testing.assert_frame_equal(first, second)

    changed = run_id_of(store_copy, sweep="fig4_ablation", sampler="macpo_no_joint", seed="1")
    MlflowClient(tracking_uri=store_copy.tracking_uri).log_metric(
        changed, "test/battle_won_mean", 0.123, step=T_MAX + 5_000
    )
    third = load_runs(store_copy.tracking_uri, EXPERIMENT, **kwargs)
    assert reads[1:] == [[changed]]  # only the run that changed is read again
    assert len(third) == len(first) + 1
    new_point = third[(third["run_id"] == changed) & (third["step"] == T_MAX + 5_000)]
    assert new_point["value"].tolist() == [pytest.approx(0.123)]


def test_cache_follows_status_changes(store_copy, tmp_path):
    kwargs = dict(sweep="fig1_replay", cache_dir=tmp_path / "cache", progress=False)
    before = load_runs(store_copy.tracking_uri, EXPERIMENT, **kwargs)
    running = run_id_of(store_copy, sweep="fig1_replay", seed="3")
    assert set(before.loc[before["run_id"] == running, "status"]) == {"RUNNING"}
    MlflowClient(tracking_uri=store_copy.tracking_uri).set_terminated(running, status="KILLED")
    after = load_runs(store_copy.tracking_uri, EXPERIMENT, **kwargs)
    assert set(after.loc[after["run_id"] == running, "status"]) == {RunStatus.to_string(RunStatus.KILLED)}


# --------------------------------------------------------------------------- curves


def _run(steps, values) -> pd.DataFrame:
    return pd.DataFrame({"step": steps, "value": values})


def test_runs_logged_at_different_steps_align_on_one_grid():
    early = _run([0, 1000, 2000, 3000], [0.0, 1.0, 2.0, 3.0])
    shifted = _run([16, 1016, 2016, 3016], [0.016, 1.016, 2.016, 3.016])  # same line, logged later
    short = _run([0, 1000], [5.0, 5.0])  # stopped early
    grid = step_grid([early, shifted, short])
    assert grid[0] == 0 and grid[-1] == 3016 and len(grid) == 4
    aligned = align_runs([early, shifted, short], grid)  # [3, G]
    # on the line, held at its end values within half a logging interval (3000 -> 3016, 16 -> 0)
    assert np.allclose(aligned[0], np.minimum(grid, 3000) / 1000)
    assert np.allclose(aligned[1], np.maximum(grid, 16) / 1000)
    assert np.isnan(aligned[2, 2:]).all()  # never extrapolated past its end


def test_mean_and_ci_band_over_runs():
    aligned = np.array([[0.0, 1.0, np.nan], [2.0, 1.0, np.nan], [4.0, 1.0, 7.0]])  # [R=3, G=3]
    mean, low, high, count = mean_and_ci(aligned, samples=2000)
    assert mean[:2] == pytest.approx([2.0, 1.0]) and count.tolist() == [3, 3, 1]
    assert low[0] < 2.0 < high[0] and 0.0 <= low[0] and high[0] <= 4.0
    assert low[1] == high[1] == 1.0  # identical runs: no spread
    assert mean[2] == low[2] == high[2] == 7.0  # one run: the band collapses onto it
    with pytest.raises(ValueError, match="confidence"):
        mean_and_ci(aligned, confidence=95)


def test_learning_curves_share_a_grid_per_task_and_count_runs(points):
    curves = learning_curves(select_runs(points, FIG1_REPLAY))
    three_s = curves[curves["task"] == "3s_vs_5z"]
    macpo, per = (three_s[three_s["method"] == m] for m in ("macpo", "per"))
    assert macpo["step"].tolist() == per["step"].tolist()  # comparable point by point
    # PER has a third, RUNNING seed that stopped at 50k steps: counted up to there only
    assert per.loc[per["step"] <= 50_000, "n_runs"].eq(3).all()
    assert per.loc[per["step"] > 60_000, "n_runs"].eq(2).all() and macpo["n_runs"].eq(2).all()
    assert (curves["ci_low"] <= curves["mean"] + 1e-9).all() and (curves["mean"] <= curves["ci_high"] + 1e-9).all()


# --------------------------------------------------------------------------- figures


def _lines(ax) -> dict[str, str]:
    return {line.get_label(): mcolors.to_hex(line.get_color()) for line in ax.get_lines()}


def test_replay_figure_panels_lines_colours_and_values(points):
    figure = replay_figure(points)
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["3s_vs_5z", "MMM2"]
    for ax in axes:
        assert _lines(ax) == {"MAC-PO": method_colour("macpo"), "PER": method_colour("per")}
        assert len(ax.collections) == 2  # one CI band per line
    three_s = {line.get_label(): line for line in axes[0].get_lines()}
    assert three_s["MAC-PO"].get_ydata()[-1] == pytest.approx(85.0)  # mean of 80% and 90%
    assert three_s["PER"].get_ydata()[-1] == pytest.approx(67.5)
    (macpo_band,) = [c for c in axes[0].collections if mcolors.to_hex(c.get_facecolor()[0]) == method_colour("macpo")]
    band = macpo_band.get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.0) and band.max() == pytest.approx(90.0)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["MAC-PO", "PER"]
    assert figure.get_size_inches()[0] <= 7.1  # fits the width of a two-column figure


def test_each_figure_has_its_panels_and_methods(points):
    fig2 = predator_prey_figure(points)
    assert [ax.get_title() for ax in fig2.axes] == ["predator_prey_small, p=0", "predator_prey_small, p=-2"]
    assert all(_lines(ax) == {"MAC-PO": method_colour("macpo"), "QMIX": method_colour("qmix")} for ax in fig2.axes)
    fig3 = smac_marl_figure(points)
    assert [ax.get_title() for ax in fig3.axes] == ["3s_vs_5z"]
    assert _lines(fig3.axes[0]) == {"MAC-PO": method_colour("macpo"), "QMIX": method_colour("qmix")}
    fig4 = ablation_figure(points)
    assert [ax.get_title() for ax in fig4.axes] == ["MMM2"]
    assert set(_lines(fig4.axes[0])) == {"MAC-PO", "w/o joint action prob."}
    # MAC-PO is a sampler in Figure 1 and an algorithm in Figure 3: one colour for both
    fig1 = replay_figure(points)
    assert _lines(fig1.axes[0])["MAC-PO"] == _lines(fig3.axes[0])["MAC-PO"] == _lines(fig4.axes[0])["MAC-PO"]
    assert len({method_colour(m) for m in ("macpo", "per", "qmix", "macpo_no_joint", "uniform")}) == 5


def test_untagged_demo_grid_of_qmix_makes_figure_2(points):
    demo = points[(points["algo"] == "qmix") & (points["sweep"] == "demo")].assign(sweep="none")
    figure = predator_prey_figure(demo)
    assert [set(_lines(ax)) for ax in figure.axes] == [{"QMIX"}, {"QMIX"}]
    with pytest.raises(MissingRunsError, match="skipped fig1_replay.*needs sweep=fig1_replay"):
        replay_figure(demo)


def test_one_algorithm_with_two_samplers_gets_two_lines(points):
    demo = points[points["sweep"] == "demo"].copy()
    demo.loc[demo["algo"] == "macpo", "algo"] = "qmix"  # now QMIX with uniform and with MAC-PO sampling
    selection = select_runs(demo, FIG2_PREDATOR_PREY)
    assert set(selection["method"]) == {"qmix", "qmix+macpo"}  # QMIX's own setup keeps its name
    figure = predator_prey_figure(demo)
    assert set(_lines(figure.axes[0])) == {"QMIX", "QMIX (MAC-PO)"}
    demo.loc[demo["sampler"] == "uniform", "sampler"] = "per"  # two non-default setups: both spelled out
    assert set(select_runs(demo, FIG2_PREDATOR_PREY)["method"]) == {"qmix+per", "qmix+macpo"}


def test_missing_figures_are_skipped_with_a_message_and_files_are_written(points, tmp_path):
    only_smac = points[points["sweep"].isin(["fig1_replay", "fig3_smac_marl"])]
    report = write_report(only_smac, tmp_path, reps=REPS)
    assert set(report.figures) == {"fig1_replay", "fig3_smac_marl"}
    skipped = [m for m in report.messages if m.startswith("skipped")]
    assert len(skipped) == 2
    assert any("fig2_predator_prey" in m and "predator_prey" in m.split("needs")[1] for m in skipped)
    assert any("fig4_ablation" in m and "macpo_no_joint" in m for m in skipped)
    assert any(m.startswith("fig3_smac_marl: partial grid") and "5m_vs_6m" in m for m in report.messages)
    for name in ("fig1_replay", "fig3_smac_marl"):
        png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
        assert png in report.paths and pdf in report.paths
    assert not (tmp_path / "fig2_predator_prey.png").exists()
    assert (tmp_path / "fig1_replay_final_performance.csv").is_file()
    claims = [line for line in (tmp_path / "headlines.md").read_text().splitlines() if line.startswith("- ")]
    assert len(claims) == 3 and claims[0].startswith("- On 3s_vs_5z, MAC-PO outperforms")  # panel order


def test_nothing_to_plot_skips_every_figure_and_writes_nothing(points, tmp_path):
    report = write_report(points[points["metric"] == "loss"], tmp_path / "out", reps=REPS)
    assert report.figures == {} and report.paths == [] and not list((tmp_path / "out").iterdir())
    assert len(report.messages) == 4
    assert all(m.startswith("skipped") and "logged no test/" in m for m in report.messages)
    empty = write_report(points.iloc[:0], None)
    assert len(empty.messages) == 4 and all("no runs" in m for m in empty.messages)


# --------------------------------------------------------------------------- tables


def _scores(points, spec):
    return final_scores(select_runs(points, spec))


def test_final_performance_iqm_and_ci_by_hand(points):
    scores = _scores(points, FIG1_REPLAY)
    assert len(scores.attrs["unscored"]) == 1  # the RUNNING run never reached the final 10%
    table = final_performance_table(scores, aggregate=True, reps=REPS).set_index(["method", "task"])
    # two seeds per cell: IQM = their mean; the bootstrap CI of the mean of two is [min, max]
    expected = {
        ("macpo", "3s_vs_5z"): (85.0, 80.0, 90.0),
        ("per", "3s_vs_5z"): (67.5, 50.0, 85.0),
        ("macpo", "mmm2"): (65.0, 60.0, 70.0),
        ("per", "mmm2"): (45.0, 40.0, 50.0),
    }
    for key, (point, low, high) in expected.items():
        row = table.loc[key]
        assert (row["iqm"], row["iqm_low"], row["iqm_high"]) == pytest.approx((point, low, high)), key
        assert row["n_runs"] == 2
    # all tasks: IQM of {80, 90, 60, 70} drops the lowest and highest -> (70 + 80) / 2
    assert table.loc[("macpo", ALL_TASKS), "iqm"] == pytest.approx(75.0)
    assert table.loc[("per", ALL_TASKS), "iqm"] == pytest.approx(50.0)  # {40, 50, 50, 85}
    assert table.loc[("macpo", ALL_TASKS), "mean"] == pytest.approx(75.0)
    low, high = table.loc[("macpo", ALL_TASKS), ["iqm_low", "iqm_high"]]
    assert 60.0 <= low <= 75.0 <= high <= 90.0
    returns = final_performance_table(_scores(points, FIG2_PREDATOR_PREY), aggregate=False, reps=REPS)
    assert ALL_TASKS not in set(returns["task"])  # returns of different punishments are not pooled


def test_probability_of_improvement_by_hand(points):
    fig1 = improvement_table(_scores(points, FIG1_REPLAY), reps=REPS).set_index("method")
    # 3s_vs_5z: MAC-PO {80, 90} vs PER {50, 85}: 3 of 4 pairs won; mmm2: 4 of 4
    assert fig1.loc["per", "3s_vs_5z"] == pytest.approx(0.75)
    assert fig1.loc["per", "mmm2"] == pytest.approx(1.0)
    assert fig1.loc["per", "probability"] == pytest.approx(0.875)
    assert fig1.loc["per", "low"] <= 0.875 <= fig1.loc["per", "high"] <= 1.0
    fig3 = improvement_table(_scores(points, FIG3_SMAC_MARL), reps=REPS).set_index("method")
    assert fig3.loc["qmix", "probability"] == pytest.approx(0.0)  # {50, 60} never beats {70, 80}
    fig2 = improvement_table(_scores(points, FIG2_PREDATOR_PREY), reps=REPS).set_index("method")
    assert fig2.loc["qmix", "probability"] == pytest.approx(0.75)  # 3/4 at p=0 and at p=-2


def test_headlines_say_what_the_data_say(points):
    fig1 = {h.task: h for h in headlines(_scores(points, FIG1_REPLAY), FIG1_REPLAY)}
    assert fig1["3s_vs_5z"].other == "per" and fig1["3s_vs_5z"].difference == pytest.approx(17.5)
    assert fig1["3s_vs_5z"].sentence.startswith("On 3s_vs_5z, MAC-PO outperforms the second best, PER, by 17.5")
    assert fig1["mmm2"].difference == pytest.approx(20.0)

    (fig3,) = headlines(_scores(points, FIG3_SMAC_MARL), FIG3_SMAC_MARL)
    assert fig3.difference == pytest.approx(-20.0)  # MAC-PO 55% vs QMIX 75%
    assert "MAC-PO trails the best method, QMIX, by 20.0 percentage points" in fig3.sentence
    assert "outperforms" not in fig3.sentence

    (fig4,) = headlines(_scores(points, FIG4_ABLATION), FIG4_ABLATION)
    assert fig4.method == "macpo_no_joint" and fig4.difference == pytest.approx(-25.0)  # 45% vs 70%
    assert "disabling the joint action probability term lowers the final win rate by 25.0" in fig4.sentence

    fig2 = {h.task: h for h in headlines(_scores(points, FIG2_PREDATOR_PREY), FIG2_PREDATOR_PREY)}
    assert fig2["predator_prey_small, p=-2"].difference == pytest.approx(1.5)  # 2.0 vs 0.5
    assert "+300% relative" in fig2["predator_prey_small, p=-2"].sentence


def test_fast_statistics_equal_rliables():
    """The NumPy statistics handed to the bootstrap equal rliable's SciPy-based ones, ties included."""
    rng = np.random.default_rng(0)
    for runs_x, runs_y, tasks in [(4, 4, 3), (3, 5, 1), (2, 7, 4), (1, 1, 2)]:
        x = rng.integers(0, 5, size=(runs_x, tasks)).astype(float)  # few levels: many ties
        y = rng.integers(0, 5, size=(runs_y, tasks)).astype(float)
        assert iqm(x) == pytest.approx(rly_metrics.aggregate_iqm(x))
        z = rng.normal(size=(runs_y, tasks))
        assert iqm(z) == pytest.approx(rly_metrics.aggregate_iqm(z))
        assert probability_of_improvement(x, y) == pytest.approx(rly_metrics.probability_of_improvement(x, y))
    same = np.array([[1.0], [2.0]])
    assert probability_of_improvement(same, same) == 0.5


def test_final_window_and_finished_runs_without_points_in_it():
    selection = pd.DataFrame(
        {
            "run_id": ["a"] * 4 + ["b"] * 2 + ["c"] * 2,
            "task": "t",
            "method": "m",
            "seed": [1] * 4 + [2] * 2 + [3] * 2,
            "status": ["FINISHED"] * 4 + ["FINISHED"] * 2 + ["KILLED"] * 2,
            "t_max": pd.array([1000] * 4 + [1000] * 2 + [1000] * 2, dtype="Int64"),
            "step": [0, 800, 900, 1000, 0, 500, 0, 500],
            "value": [9.0, 9.0, 1.0, 3.0, 7.0, 4.0, 7.0, 4.0],
        }
    )
    scores = final_scores(selection).set_index("run_id")
    assert scores.loc["a", "final"] == pytest.approx(2.0)  # steps >= 900: mean of 1 and 3
    assert scores.loc["b", "final"] == pytest.approx(4.0)  # finished early: its last point
    assert "c" not in scores.index and scores.attrs["unscored"] == ["c"]
    with pytest.raises(ValueError, match="fraction"):
        final_scores(selection, fraction=0.0)


# --------------------------------------------------------------------------- CLI


def test_cli_writes_and_prints_every_file(store, tmp_path, capsys):
    out = tmp_path / "figures"
    code = main(
        [
            "--tracking-uri",
            store.tracking_uri,
            "--experiment",
            store.experiment,
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--reps",
            str(REPS),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = [Path(line) for line in capsys.readouterr().out.splitlines() if line.startswith(str(out))]
    assert printed and all(path.is_file() for path in printed)
    assert sorted(printed) == sorted(p for p in out.iterdir())
    assert any(path.suffix == ".png" for path in printed) and any(path.suffix == ".pdf" for path in printed)


def test_cli_sweep_filter_and_missing_figures(synthetic_store, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--tracking-uri", synthetic_store.tracking_uri, "--sweep", "demo", "--out", str(out)]
    assert main([*args, "--no-cache", "--reps", str(REPS), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(":")[0] for line in lines if line.startswith("skipped")) == [
        "skipped fig1_replay",
        "skipped fig3_smac_marl",
        "skipped fig4_ablation",
    ]
    assert (out / "fig2_predator_prey.png").is_file() and (out / "fig2_predator_prey.pdf").is_file()
    assert not (out / "fig1_replay.png").exists()


def test_cli_keeps_finished_runs_unless_told(synthetic_store, tmp_path, capsys):
    args = ["--tracking-uri", synthetic_store.tracking_uri, "--sweep", "fig1_replay", "--no-cache", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a"), "--reps", str(REPS)]) == 0
    printed = capsys.readouterr().out
    assert "left out 1 FAILED, 1 RUNNING run(s)" in printed and "unfinished" not in printed
    assert main([*args, "--out", str(tmp_path / "b"), "--reps", str(REPS), "--status", "all"]) == 0
    printed = capsys.readouterr().out
    assert not any(line.startswith("left out") for line in printed.splitlines())
    assert "fig1_replay: 2 unfinished run(s) without points in the last 10%" in printed
    for folder in ("a", "b"):  # either way the tables score the same finished runs
        table = pd.read_csv(tmp_path / folder / "fig1_replay_final_performance.csv")
        assert table.set_index(["method", "task"]).loc[("per", "mmm2"), "n_runs"] == 2


def test_cli_bad_arguments_exit_with_a_message(synthetic_store, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--tracking-uri", synthetic_store.tracking_uri, "--experiment", "nope", "--no-cache"])
    assert exited.value.code == 2 and "--experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--tracking-uri", synthetic_store.tracking_uri, "--reps", "0"])
    assert "--reps" in capsys.readouterr().err


def test_composite_methods_take_their_samplers_distinct_colours():
    from analysis.style import METHOD_COLOURS, method_colour

    composites = [f"macpo+{s}" for s in ("per", "pser", "discor", "remern", "macpo_approx")]
    colours = [method_colour(m) for m in composites]
    assert colours == [METHOD_COLOURS[m.split("+")[1]] for m in composites]
    assert len(set(colours)) == len(colours)


def test_cli_writes_nothing_outside_its_output_and_the_stores_folder(synthetic_store, tmp_path, monkeypatch):
    """The default history cache is ``.analysis_cache`` beside the database, not in the working folder."""
    launch = tmp_path / "launch"
    launch.mkdir()
    monkeypatch.chdir(launch)
    store_folder = synthetic_store.path.parent
    before = {p for p in store_folder.iterdir() if p.name != ".analysis_cache"}
    out = tmp_path / "out"
    args = ["--tracking-uri", synthetic_store.tracking_uri, "--sweep", "demo", "--out", str(out), "--no-progress"]
    assert main([*args, "--reps", str(REPS)]) == 0
    assert list(launch.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["launch", "out"]
    assert {p for p in store_folder.iterdir() if p.name != ".analysis_cache"} == before
    assert any((store_folder / ".analysis_cache").rglob("*.parquet"))
