"""analysis.report and analysis.claims: the results page from results/ alone, and the claims' verdicts.

A small store holds three of the page's grids (a, b and c of issue 18; d is not run), each
partial in a known way; the runs' final values are chosen so every verdict of the rule appears.
The round trip: the export's files, read back, give the same finals, CIs, probabilities of
improvement and claim measurements as the store itself.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import claims, report, tables
from analysis.load import load_runs
from analysis.report import (
    PAGE_GRIDS,
    SUMMARY_END,
    SUMMARY_START,
    analyse,
    main,
    paper_t_max,
    summary_lines,
    write_page,
)
from analysis.results import Grid, export_grid, read_folder
from analysis.selection import FIG1_REPLAY, FIG2_PREDATOR_PREY, FIG4_ABLATION, select_runs
from macpo.config.checks import compose
from macpo.runs.grids import grid_cells
from tests.analysis.results_store import INTERVAL, T_MAX, FakeRun, log_runs

EXPERIMENT = "results"
REPS = 200
SEEDS = (0, 1, 2)


def _pp(algo, finals, rise, **kw):
    sampler = "macpo" if algo == "macpo" else "uniform"
    return [FakeRun("fig2_predator_prey", "predator_prey", algo, sampler, s, f, punishment=-0.5, rise=rise, **kw)
            for s, f in zip(SEEDS, finals)]  # fmt: skip


def _smac(sweep, sampler, finals, **kw):
    return [FakeRun(sweep, "5m_vs_6m", "macpo", sampler, s, f, **kw) for s, f in zip(SEEDS, finals)]


# grid a: 3 of 8 methods; MAC-PO rises by half the budget, the others by 90%
GRID_A = (
    _pp("qmix", (4.0, 5.0, 6.0), 0.9)
    + _pp("ow_qmix", (6.0, 7.0, 8.0), 0.9, cpu_seconds=None)  # a run from before perf/cpu_seconds
    + _pp("macpo", (7.0, 8.0, 9.0), 0.5)
)
GRID_A[-1].precision = "bf16-mixed"
# grid b: all 7 lines; DisCor overlaps PER, ReMERN is well below it, MAC-PO Approx. is 2 points under MAC-PO
GRID_B = (
    _smac("fig1_replay", "macpo", (0.60, 0.65, 0.70))
    + _smac("fig1_replay", "macpo_approx", (0.58, 0.63, 0.68))
    + _smac("fig1_replay", "per", (0.30, 0.35, 0.40))
    + _smac("fig1_replay", "pser", (0.31, 0.36, 0.41))
    + _smac("fig1_replay", "discor", (0.32, 0.37, 0.42))
    + _smac("fig1_replay", "remern", (0.10, 0.12, 0.14))
    + _smac("fig1_replay", "uniform", (0.40, 0.45, 0.50))
)
# grid c: removing the joint term costs, removing the Bellman term helps, the value term has one seed
GRID_C = (
    _smac("fig4_ablation", "macpo", (0.60, 0.65, 0.70))
    + _smac("fig4_ablation", "macpo_no_joint", (0.20, 0.25, 0.30))
    + _smac("fig4_ablation", "macpo_no_bellman", (0.80, 0.85, 0.90))
    + _smac("fig4_ablation", "macpo_no_value", (0.50,))
)
CUTS = {
    "a": (Grid("fig2_predator_prey", "results", punishment=-0.5), FIG2_PREDATOR_PREY),
    "b": (Grid("fig1_replay", "results", map_name="5m_vs_6m"), FIG1_REPLAY),
    "c": (Grid("fig4_ablation", "results", map_name="5m_vs_6m"), FIG4_ABLATION),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The store, the results folder exported from it, and the page written from the folder."""
    root = tmp_path_factory.mktemp("page")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    log_runs(uri, EXPERIMENT, GRID_A + GRID_B + GRID_C)
    for grid, _ in CUTS.values():
        export_grid(uri, EXPERIMENT, grid, root / "results" / grid.file_name(), cache_dir=None, command="test")
    page = write_page(root / "results", root / "docs" / "results.md", reps=REPS)
    return uri, root, page


def _store_selection(uri: str, key: str) -> pd.DataFrame:
    """What the figure's analysis sees when it reads the grid from the store directly."""
    grid, spec = CUTS[key]
    points = load_runs(uri, EXPERIMENT, sweep=grid.name, statuses=["FINISHED"], cache_dir=None, progress=False)
    if grid.punishment is not None:
        points = points[points["punishment"] == grid.punishment]
    else:
        points = points[points["env"] == grid.map_name]
    return select_runs(points, spec)


def test_round_trip_gives_the_stores_finals_cis_and_claims(built):
    uri, _, page = built
    by_name = {grid.results.grid.name: grid for grid in page.grids}
    assert set(by_name) == {grid.name for grid, _ in CUTS.values()}
    selections = []
    for key, (grid, spec) in CUTS.items():
        selection = _store_selection(uri, key)
        scores = tables.final_scores(selection)
        mine = by_name[grid.name]
        pd.testing.assert_frame_equal(mine.scores, scores)
        pd.testing.assert_frame_equal(
            mine.performance, tables.final_performance_table(scores, aggregate=False, reps=REPS)
        )
        pd.testing.assert_frame_equal(mine.improvement, tables.improvement_table(scores, reps=REPS))
        selections.append((mine.label, spec, selection))
    from_store = claims.claims_table(claims.measure_all(selections, reps=REPS))
    pd.testing.assert_frame_equal(claims.claims_table(page.measurements), from_store)


def _verdicts(page, figure: str, statement: str) -> list[str]:
    return [m.verdict for m in page.measurements if m.claim.figure.name == figure and statement in m.claim.statement]


def test_each_verdict_follows_the_rule(built):
    _, _, page = built
    assert _verdicts(page, "fig1_replay", "DisCor") == [claims.INCONCLUSIVE]  # overlaps PER
    assert _verdicts(page, "fig1_replay", "ReMERN") == [claims.CONTRADICTED]  # well below PER
    assert _verdicts(page, "fig1_replay", "almost identical") == [claims.REPRODUCED]  # within ±10 points
    assert _verdicts(page, "fig1_replay", "uniform replay") == [claims.REPRODUCED]
    # MAC-PO's curve is above QMIX's and OW-QMIX's, but five baselines have no runs: one may be faster
    (fastest,) = [m for m in page.measurements if "converges fastest" in m.claim.statement]
    assert (fastest.verdict, fastest.low > 0) == (claims.INCONCLUSIVE, True)
    assert fastest.reason == "fewer than 2 runs of CW-QMIX, QPLEX, VDAC, FOP, DOP, which may be the second best"
    assert _verdicts(page, "fig4_ablation", "joint action") == [claims.REPRODUCED]
    assert _verdicts(page, "fig4_ablation", "Bellman") == [claims.CONTRADICTED]
    assert _verdicts(page, "fig4_ablation", "value enhancement") == [claims.INCONCLUSIVE]  # one run
    # grids and cuts not run: 3s_vs_5z and MMM2 (Figs. 1, 3), Fig. 3 altogether, predator-prey p = -2
    not_measured = [m for m in page.measurements if m.verdict == claims.NOT_MEASURED]
    assert {(m.claim.figure.name, m.claim.map_name, m.claim.punishment) for m in not_measured} == {
        ("fig1_replay", "3s_vs_5z", None), ("fig1_replay", "mmm2", None),
        ("fig3_smac_marl", "3s_vs_5z", None), ("fig3_smac_marl", "5m_vs_6m", None), ("fig3_smac_marl", "mmm2", None),
        ("fig2_predator_prey", None, -2.0),
    }  # fmt: skip
    for m in page.measurements:
        if m.verdict != claims.NOT_MEASURED:
            assert m.low <= m.difference <= m.high and m.probability_low <= m.probability <= m.probability_high


def test_a_best_of_claim_waits_for_every_method_to_reproduce_but_not_to_contradict(built):
    _, _, page = built
    (grid_a,) = [grid for grid in page.grids if grid.plan.key == "a"]
    run = ("qmix", "ow_qmix")
    over_run = claims.Claim(FIG2_PREDATOR_PREY, "MAC-PO converges fastest", "", "macpo", run, kind="faster")
    assert [m.verdict for m in claims.measure(over_run, grid_a.selection, "a", reps=REPS)] == [claims.REPRODUCED]
    below = claims.Claim(FIG2_PREDATOR_PREY, "QMIX beats the rest", "", "qmix", ("macpo", "cw_qmix"))
    (measured,) = claims.measure(below, grid_a.selection, "a", reps=REPS)  # CW-QMIX has no runs
    assert (measured.verdict, measured.other) == (claims.CONTRADICTED, "macpo")


def test_second_best_is_the_best_other_method_in_our_runs(built):
    _, _, page = built
    fig1 = [m for m in page.measurements if m.claim.figure.name == "fig1_replay"]
    (margin,) = [m for m in fig1 if m.claim.map_name == "5m_vs_6m"]
    assert margin.other == "macpo_approx"  # the uniform control is not one of the paper's schemes
    assert margin.difference == pytest.approx(2.0)
    assert margin.target_in_ci is (margin.low <= 6 <= margin.high)


def test_page_says_what_is_partial_and_where_the_numbers_came_from(built):
    _, root, page = built
    text = (root / "docs" / "results.md").read_text()
    assert "**partial**: 9 of 24 planned runs" in text
    assert "Missing: CW-QMIX (seeds 0, 1, 2), QPLEX (seeds 0, 1, 2)" in text
    assert "Missing: w/o value enhancement (seeds 1, 2)" in text
    assert "**complete**: 21 of 21 planned runs" in text
    assert "**d. Figure 3 on 5m_vs_6m-lite: MARL algorithms**: no runs exported" in text
    assert "precision (`trainer.precision`): 32-true (8 runs), bf16-mixed (1 run)" in text
    known = sum(run.cpu_seconds for run in GRID_A if run.cpu_seconds is not None)
    assert f"≥ {known / 3600:.1f} (3 run(s) without `perf/cpu_seconds`) CPU-hours in all" in text
    b_hours = sum(run.cpu_seconds for run in GRID_B) / 3600
    assert f"{b_hours:.1f} CPU-hours in all" in text
    assert "| OW-QMIX | predator_prey, p=-0.5 | 6.00 | 7.00 | 8.00 | 7.00 | unknown |" in text  # finals per seed
    assert f"| QMIX | predator_prey, p=-0.5 | 4.00 | 5.00 | 6.00 | 5.00 | {1800 / 3600:.2f} |" in text
    assert "simulator: lite v3" in text and "Test CPU (2 cores)" in text and "`0123456789`" in text
    assert f"budget: {T_MAX} env steps" in text
    assert "StarCraft-free stand-in" in text and "budget is reduced" in text
    assert claims.VERDICT_RULE in text
    for grid in page.grids:  # one figure per grid, beside the page, linked relative to it
        assert grid.figure_path.is_file() and grid.figure_path.parent == root / "docs" / "results"
        assert f"(results/{grid.figure_path.name})" in text
    assert "/tmp" not in text.replace(str(root), "<root>").split("<!--")[0]


def test_regenerating_gives_the_same_page_and_drops_stale_figures(built, tmp_path):
    _, root, page = built
    shutil.copytree(root / "results", tmp_path / "results")  # a fresh clone: the files alone
    stale = tmp_path / "docs" / "results" / "gone.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    again = write_page(tmp_path / "results", tmp_path / "docs" / "results.md", reps=REPS)
    assert not stale.exists()
    assert again.markdown.replace(str(tmp_path), "<root>") == page.markdown.replace(str(root), "<root>")
    for grid in page.grids:
        assert (stale.parent / grid.figure_path.name).read_bytes() == grid.figure_path.read_bytes()


def test_cli_writes_the_page_and_refuses_a_hand_edited_file(built, tmp_path, capsys):
    _, root, _ = built
    out = tmp_path / "docs" / "results.md"
    assert main([str(root / "results"), "--out", str(out), "--reps", "50"]) == 0
    assert out.is_file() and len(list((tmp_path / "docs" / "results").glob("*.png"))) == len(CUTS)

    edited = tmp_path / "edited"
    edited.mkdir()
    for path in (root / "results").glob("*.json"):
        (edited / path.name).write_text(path.read_text().replace('"status": "FINISHED"', '"status": "KILLED"', 1))
    assert main([str(edited), "--out", str(out)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_readme_summary_counts_the_verdicts_and_is_rewritten_between_its_markers(built, tmp_path, capsys):
    _, root, page = built
    lines = summary_lines(page)
    assert len(lines) == 5 and all(line.startswith("- **") for line in lines)
    assert lines[0].endswith("a 9/24, b 21/21, c 10/12, d 0/24, e 0/24.")
    verdicts = [m.verdict for m in page.measurements]
    for line, verdict in zip(lines[1:4], (claims.REPRODUCED, claims.CONTRADICTED, claims.INCONCLUSIVE)):
        assert f"({verdicts.count(verdict)})" in line
    assert f"({verdicts.count(claims.NOT_MEASURED)}): claims of Fig. 1, Fig. 2, Fig. 3" in lines[4]
    assert "Fig. 4 removing the Bellman error term costs (5m_vs_6m)" in lines[2]  # no Bellman term helps here

    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n{SUMMARY_START}\n- stale\n{SUMMARY_END}\nrest\n")
    out = tmp_path / "docs" / "results.md"
    assert main([str(root / "results"), "--out", str(out), "--reps", str(REPS), "--readme", str(readme)]) == 0
    assert readme.read_text() == "# top\n" + SUMMARY_START + "\n" + "\n".join(lines) + "\n" + SUMMARY_END + "\nrest\n"
    capsys.readouterr()
    readme.write_text("# no markers\n")
    out.unlink()
    assert main([str(root / "results"), "--out", str(out), "--readme", str(readme)]) == 1
    assert "no line" in capsys.readouterr().err and not out.exists()  # refused before writing anything


def test_every_planned_grid_matches_its_file_name(built):
    _, root, _ = built
    files = {results.path.name: results for results in read_folder(root / "results")}
    for plan in PAGE_GRIDS[:3]:
        assert [name for name, results in files.items() if plan.matches(results)] == [
            Grid(plan.name, "results", plan.punishment, plan.map_name).file_name()
        ]


def test_each_grids_command_trains_its_planned_runs_and_shared_runs_once():
    """A grid's `run it` command covers its planned lines × seeds; a line trained in another grid is left out."""
    for plan in PAGE_GRIDS:
        words = plan.train.split()
        assert words[:4] == ["python", "-m", "macpo.train", "-m"] and f"sweep={plan.name}" in words
        cells = [dict(o.split("=", 1) for o in cell.split()) for cell in grid_cells(plan.name, words[4:])]
        trained = {(cell.get("sampler", cell.get("method")), int(cell["seed"])) for cell in cells}
        shared = {("macpo", seed) for seed in plan.seeds} if plan.shared else set()
        assert trained.isdisjoint(shared) and trained | shared == {(m, s) for m in plan.methods for s in plan.seeds}


def test_paper_budget_cost_scales_each_methods_cost_per_step(built):
    """1800 CPU-s per 50k-step run → 2.05M (predator-prey) or 2M (SMAC) steps, × 3 seeds, per costed method."""
    _, _, page = built
    rows = {line.split(" | ")[0]: line for line in page.markdown.splitlines() if line.startswith("| a |") or
            line.startswith("| b |")}  # fmt: skip
    per_run_a, per_run_b = 1800 / T_MAX * 2_050_000, 1800 / T_MAX * 2_000_000
    uncosted = "OW-QMIX, CW-QMIX, QPLEX, VDAC, FOP, DOP"  # OW-QMIX's runs carry no perf/cpu_seconds
    assert rows["| a"].endswith(f"| ≈ {2 * 3 * per_run_a / 3600:.0f} (without {uncosted}) |")
    assert rows["| b"].endswith(f"| ≈ {7 * 3 * per_run_b / 3600:.0f} |")


def test_the_paper_budget_is_the_budget_paper_preset():
    for env, environment in (("predator_prey", "predator_prey"), ("5m_vs_6m", "smac_lite_v3")):
        assert compose([f"env={env}", "budget=paper"]).t_max == paper_t_max(environment)


def test_the_page_says_whether_marl_eval_can_aggregate_a_grid(built):
    _, root, _ = built
    (grid_b,) = [f for f in read_folder(root / "results") if f.grid.name == "fig1_replay"]
    section = "\n".join(report._grid_section(analyse([grid_b], reps=REPS).grids[0], root))
    assert "its curves line up for marl-eval's aggregation\n" in section  # complete, every run tested alike
    curve = grid_b.curve(next(iter(grid_b.runs)))
    del curve[max((k for k in curve if k.startswith("step_")), key=lambda k: int(k[5:]))]  # one test fewer
    section = "\n".join(report._grid_section(analyse([grid_b], reps=REPS).grids[0], root))
    assert "its curves do not line up" in section and "different numbers of evaluations" in section


def test_one_configuration_in_two_grids_is_checked_seed_by_seed(built):
    """DisCor (b) and MAC-PO w/o the joint term (c) are one configuration: the page compares their finals."""
    _, _, page = built
    grids = {grid.plan.key: grid for grid in page.grids}
    (differ,) = [line for line in report._same_configuration_lines(page, grids["c"]) if line]
    assert "differ (seed 0: 20.0 vs 32.0, seed 1: 25.0 vs 37.0, seed 2: 30.0 vs 42.0)" in differ
    scores = grids["c"].scores.copy()
    ablated = scores["method"] == "macpo_no_joint"
    discor = grids["b"].scores.set_index(["method", "seed"]).loc["discor", "final"]
    scores.loc[ablated, "final"] = scores.loc[ablated, "seed"].map(discor).to_numpy()
    alike = report.Page(grids=[grids["b"], dataclasses.replace(grids["c"], scores=scores)])
    (agree,) = [line for line in report._same_configuration_lines(alike, alike.grids[1]) if line]
    assert "agree on every seed they share (0, 1, 2: 32.0, 37.0, 42.0)" in agree
    assert report._same_configuration_lines(page, grids["b"]) == []  # said once, under the second grid
    assert report._same_configuration_lines(report.Page(grids=[grids["c"]]), grids["c"]) == []  # b not run


def test_a_comparison_across_grids_is_drawn_with_its_ci_once_both_lines_have_runs(built):
    """Grid b's uniform-replay control against grid d's QMIX (here: a grid d built from grid c's frame)."""
    _, _, page = built
    grids = {grid.plan.key: grid for grid in page.grids}
    (plan_d,) = [plan for plan in PAGE_GRIDS if plan.key == "d"]
    qmix = grids["c"].scores[grids["c"].scores["method"] == "macpo_no_joint"].assign(method="qmix")  # 20, 25, 30
    grid_d = dataclasses.replace(grids["c"], plan=plan_d, scores=qmix)
    with_d = report.Page(grids=[grids["b"], grid_d])
    (line,) = [line for line in report._cross_grid_lines(with_d, grid_d, reps=REPS) if line]
    difference, low, high, *_ = claims.compare([40.0, 45.0, 50.0], [20.0, 25.0, 30.0], reps=REPS)
    assert difference == pytest.approx(20.0) and low > 0
    assert f"(grid b) 45.0 against QMIX (this grid) 25.0 (n=3/3); difference +20.0 [{low:+.1f}, {high:+.1f}]" in line
    one_run = dataclasses.replace(grid_d, scores=qmix.iloc[:1])
    assert report._cross_grid_lines(report.Page(grids=[grids["b"], one_run]), one_run, reps=REPS) == []
    assert report._cross_grid_lines(page, grids["c"], reps=REPS) == []  # drawn under grid d only


# ---- the statistics behind a verdict ------------------------------------------------------------


def test_compare_is_the_difference_of_means_and_the_probability_of_improvement():
    x, y = np.array([3.0, 5.0, 7.0]), np.array([1.0, 4.0])
    difference, low, high, probability, p_low, p_high = claims.compare(x, y, reps=500)
    assert difference == pytest.approx(x.mean() - y.mean())
    assert probability == pytest.approx(5 / 6)  # 5 of the 6 pairs have x above y
    assert low < difference < high and p_low <= probability <= p_high
    assert claims.compare(x, y, reps=500) == (difference, low, high, probability, p_low, p_high)  # seeded
    separated = claims.compare(x + 10, y, reps=500)
    assert separated[1] > 0 and separated[3:] == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("kind", "low", "high", "n", "expected"),
    [
        ("above", 0.1, 5.0, 3, claims.REPRODUCED),
        ("above", -5.0, -0.1, 3, claims.CONTRADICTED),
        ("above", -0.1, 5.0, 3, claims.INCONCLUSIVE),
        ("above", 0.1, 5.0, 1, claims.INCONCLUSIVE),
        ("close", -9.0, 9.0, 3, claims.REPRODUCED),
        ("close", -9.0, 11.0, 3, claims.INCONCLUSIVE),
        ("close", 10.5, 20.0, 3, claims.CONTRADICTED),
        ("close", -20.0, -10.5, 3, claims.CONTRADICTED),
    ],
)
def test_verdict_rule(kind, low, high, n, expected):
    claim = claims.Claim(FIG1_REPLAY, "x", "y", "macpo", ("per",), kind=kind)
    assert claims.verdict(claim, low, high, n, 3)[0] == expected


def test_area_under_the_curve_rewards_getting_there_sooner():
    runs = [FakeRun("s", "predator_prey", "qmix", "uniform", 0, 8.0, punishment=-0.5, rise=r) for r in (0.5, 0.9)]
    rows = [
        {"run_id": f"r{i}", "task": "t", "method": "m", "seed": 0, "status": "FINISHED", "t_max": T_MAX,
         "step": step, "value": value}
        for i, run in enumerate(runs)
        for step, value in run.curve()
    ]  # fmt: skip
    scores = claims.auc_scores(pd.DataFrame(rows))
    # a ramp to f by r*T then flat has mean f*(1 - r/2) over [0, T] (the evaluations fall on the ramp's end)
    assert T_MAX // 2 % INTERVAL == 0
    assert scores["final"].tolist() == pytest.approx([8.0 * 0.75, 8.0 * (1 - 0.45)], rel=0.02)
    assert tables.final_scores(pd.DataFrame(rows))["final"].tolist() == pytest.approx([8.0, 8.0])


def test_the_committed_page_is_what_make_results_writes(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "results").is_dir():
        pytest.skip("no results/ yet")
    shutil.copytree(repo / "results", tmp_path / "results")
    monkeypatch.chdir(tmp_path)  # the page names its folder as make results does: results/
    page = write_page("results/", "docs/results.md", reps=tables.BOOTSTRAP_REPS)
    assert page.markdown == (repo / "docs" / "results.md").read_text(), "results/ changed: run make results"
    committed = {path.name for path in (repo / "docs" / "results").glob("*.png")}
    assert {path.name for path in page.paths if path.suffix == ".png"} == committed
    readme = (repo / "README.md").read_text()
    block = readme[readme.index(SUMMARY_START) + len(SUMMARY_START) : readme.index(SUMMARY_END)]
    assert block.strip("\n").split("\n") == summary_lines(page), "the README's summary is stale: run make results"
