"""The results page from ``results/`` alone; CLI ``python -m analysis.report results/ --out docs/results.md``.

Reads the grid files the export writes (``analysis.results``), turns each back into the tidy
frame a store gives (``results_points``) and runs the suite's own analysis on it: the figure of
the grid (``analysis.figures.draw_selection``, PNG beside the page), final performance with IQM
and stratified-bootstrap CIs and MAC-PO's probability of improvement (``analysis.tables``), and
the paper's claims with verdicts (``analysis.claims``). No store, no training: seconds.

The page says what each grid is against the plan of issue 18 (``PAGE_GRIDS``: which methods
and seeds), which of its cells are present, and where its numbers came from: budget, precision,
commits, machines and measured CPU-hours (the sum of each run's ``perf/cpu_seconds``).
Two kinds of notes join grids: lines that are one configuration by the paper's formulas
(``SAME_CONFIGURATIONS``, their finals compared seed by seed) and comparisons the paper does not
draw (``CROSS_GRID_COMPARISONS``, with a CI).
With ``--readme README.md`` it also rewrites the README's five-line summary of the verdicts
(between ``SUMMARY_START`` and ``SUMMARY_END``), so the README never states a result by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import claims as claims_module
from analysis import tables
from analysis.export import evaluation_counts
from analysis.figures import draw_selection
from analysis.results import TOOL as EXPORT_TOOL
from analysis.results import ResultsFile, ResultsFileError, read_folder, results_points, run_records
from analysis.selection import FIGURES, REFERENCE_METHOD, FigureSpec, ordered_methods, select_runs
from analysis.style import method_label, task_label

TOOL = "python -m analysis.report"
DPI = 200
BUDGET = "results"
SUMMARY_START = "<!-- results summary: written by make results -->"
SUMMARY_END = "<!-- end of results summary -->"


@dataclass(frozen=True)
class PageGrid:
    """One grid the page plans for (issue 18: a-d, then e): which file, lines and seeds make it complete."""

    key: str
    name: str  # the figure's sweep name
    title: str
    methods: tuple[str, ...]  # lines as the figure names them (``select_runs``)
    seeds: tuple[int, ...]
    train: str  # the command that runs it
    punishment: float | None = None
    map_name: str | None = None
    shared: str | None = None  # the export that adds runs trained once in another grid

    def matches(self, results: ResultsFile) -> bool:
        grid = results.grid
        return (grid.name, grid.budget, grid.punishment, grid.map_name) == (
            self.name, BUDGET, self.punishment, self.map_name,
        )  # fmt: skip


#: the paper's budget in env steps (conf/budget/paper.yaml; a test pins the two together)
PAPER_T_MAX = {"predator_prey": 2_050_000}
PAPER_T_MAX_DEFAULT = 2_000_000  # SMAC
MARL_METHODS = ("qmix", "ow_qmix", "cw_qmix", "qplex", "vdac", "fop", "dop", "macpo")
SEEDS = (0, 1, 2)
#: MAC-PO (its own sampler) on 5m_vs_6m-lite is one configuration in grids b, c and d: trained once, in b
MACPO_FROM_GRID_B = "--from-sweep fig1_replay --algo macpo --sampler macpo"
PAGE_GRIDS = (
    PageGrid("a", "fig2_predator_prey", "Figure 2 on predator-prey, punishment p = −0.5", MARL_METHODS, SEEDS,
             "python -m macpo.train -m sweep=fig2_predator_prey budget=results env.punishment=-0.5 seed=0,1,2",
             punishment=-0.5),  # fmt: skip
    PageGrid("b", "fig1_replay", "Figure 1 on 5m_vs_6m-lite: replay schemes on the MAC-PO backbone",
             ("macpo", "macpo_approx", "per", "pser", "discor", "remern", "uniform"), SEEDS,
             "python -m macpo.train -m sweep=fig1_replay budget=results env=5m_vs_6m "
             "sampler=per,pser,discor,remern,macpo,macpo_approx,uniform seed=0,1,2", map_name="5m_vs_6m"),  # fmt: skip
    PageGrid("c", "fig4_ablation", "Figure 4 on 5m_vs_6m-lite: MAC-PO with one weight term removed",
             ("macpo", "macpo_no_bellman", "macpo_no_value", "macpo_no_joint"), SEEDS,
             "python -m macpo.train -m sweep=fig4_ablation budget=results env=5m_vs_6m "
             "sampler=macpo_no_joint,macpo_no_bellman,macpo_no_value seed=0,1,2",
             map_name="5m_vs_6m", shared=MACPO_FROM_GRID_B),  # fmt: skip
    PageGrid("d", "fig3_smac_marl", "Figure 3 on 5m_vs_6m-lite: MARL algorithms", MARL_METHODS, SEEDS,
             "python -m macpo.train -m sweep=fig3_smac_marl budget=results env=5m_vs_6m "
             "method=qmix,ow_qmix,cw_qmix,qplex,vdac,fop,dop seed=0,1,2",
             map_name="5m_vs_6m", shared=MACPO_FROM_GRID_B),  # fmt: skip
    PageGrid("e", "fig2_predator_prey", "Figure 2 on predator-prey, the hard punishment p = −2", MARL_METHODS, SEEDS,
             "python -m macpo.train -m sweep=fig2_predator_prey budget=results env.punishment=-2 seed=0,1,2",
             punishment=-2.0),  # fmt: skip
)


@dataclass(frozen=True)
class GridPairNote:
    """A note joining a line of one grid to a line of another, printed under the second grid."""

    first: tuple[str, str]  # (grid key, method)
    second: tuple[str, str]
    why: str


@dataclass(frozen=True)
class SameConfiguration(GridPairNote):
    """Two lines that are one configuration by the paper's formulas (a check of determinism)."""


SAME_CONFIGURATIONS = (
    SameConfiguration(("b", "discor"), ("c", "macpo_no_joint"),
                      "the paper's DisCor weight |δ| · exp(−|Q_tot − Q*|) is MAC-PO's without the joint-action "
                      "factor f, on the same backbone"),  # fmt: skip
)


@dataclass(frozen=True)
class CrossGridComparison(GridPairNote):
    """A comparison the paper does not draw (A − B, A the first line), on the same map, budget and seeds."""

    first_label: str = ""


CROSS_GRID_COMPARISONS = (
    CrossGridComparison(("b", "uniform"), ("d", "qmix"),
                        "how much of MAC-PO's distance to QMIX comes from its learner rather than its replay",
                        first_label="MAC-PO's learner with uniform replay"),  # fmt: skip
)


@dataclass
class GridReport:
    """What the page says about one results file."""

    results: ResultsFile
    spec: FigureSpec
    plan: PageGrid | None
    selection: pd.DataFrame
    records: pd.DataFrame
    scores: pd.DataFrame
    performance: pd.DataFrame
    improvement: pd.DataFrame
    figure_path: Path | None = None

    @property
    def label(self) -> str:
        return self.results.path.stem if self.results.path is not None else self.results.grid.name


@dataclass
class Page:
    grids: list[GridReport] = field(default_factory=list)
    measurements: list[claims_module.Measurement] = field(default_factory=list)
    markdown: str = ""
    messages: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def figure_of(name: str) -> FigureSpec | None:
    """The figure whose sweep a grid is named after."""
    return next((spec for spec in FIGURES if name in spec.sweeps), None)


def analyse(files: Sequence[ResultsFile], *, reps: int = tables.BOOTSTRAP_REPS) -> Page:
    """Tables and claims for each file (no figures drawn, nothing written)."""
    page = Page()
    for results in files:
        spec = figure_of(results.grid.name)
        if spec is None:
            page.messages.append(f"{results.path}: grid {results.grid.name!r} is none of the paper's figures; left out")
            continue
        selection = select_runs(results_points(results), spec)
        scores = tables.final_scores(selection)
        plan = next((grid for grid in PAGE_GRIDS if grid.matches(results)), None)
        page.grids.append(
            GridReport(
                results,
                spec,
                plan,
                selection,
                run_records(results),
                scores,
                tables.final_performance_table(scores, aggregate=False, reps=reps),
                tables.improvement_table(scores, reps=reps),
            )
        )
    page.grids.sort(key=_grid_order)
    page.measurements = claims_module.measure_all(
        ((grid.label, grid.spec, grid.selection) for grid in page.grids), reps=reps
    )
    return page


def write_page(
    folder: str | Path, out: str | Path, *, figures: str | Path | None = None, reps: int = tables.BOOTSTRAP_REPS
) -> Page:
    """Read `folder`, write the page to `out` and its PNGs to `figures` (default: `out` without suffix)."""
    out = Path(out)
    figure_dir = Path(figures) if figures is not None else out.with_suffix("")
    page = analyse(read_folder(folder), reps=reps)
    figure_dir.mkdir(parents=True, exist_ok=True)
    written = set()
    for grid in page.grids:
        if grid.selection.empty:
            page.messages.append(f"{grid.label}: no test curve to draw")
            continue
        figure = draw_selection(grid.selection, grid.spec)
        path = figure_dir / f"{grid.label}.png"
        figure.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        grid.figure_path = path
        written.add(path.name)
        page.paths.append(path)
    for stale in figure_dir.glob("*.png"):  # a grid that is gone takes its figure with it
        if stale.name not in written:
            stale.unlink()
    page.markdown = render(page, out.parent, folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page.markdown)
    page.paths.append(out)
    return page


# ---- the README's summary ----------------------------------------------------------------------------


def summary_lines(page: Page) -> list[str]:
    """Five Markdown lines: what was run, then the claims by verdict (the page has the numbers)."""
    grids = []
    for plan in PAGE_GRIDS:
        grid = next((grid for grid in page.grids if grid.plan is plan), None)
        grids.append(f"{plan.key} {len(grid.records) if grid else 0}/{len(plan.methods) * len(plan.seeds)}")
    lines = [f"- **Runs so far** (grid: runs present/planned, `budget={BUDGET}`, SMAC on SMAC-lite): "
             + ", ".join(grids) + "."]  # fmt: skip
    for verdict, title in ((claims_module.REPRODUCED, "Reproduced"), (claims_module.CONTRADICTED, "Contradicted"),
                           (claims_module.INCONCLUSIVE, "Inconclusive")):  # fmt: skip
        found = [claims_module.short_label(m) for m in page.measurements if m.verdict == verdict]
        lines.append(f"- **{title}** ({len(found)}): " + ("; ".join(found) if found else "none") + ".")
    absent = [m for m in page.measurements if m.verdict == claims_module.NOT_MEASURED]
    figures = sorted({claims_module.figure_number(m.claim) for m in absent})
    lines.append(f"- **Not measured yet** ({len(absent)}): claims of "
                 + (", ".join(f"Fig. {number}" for number in figures) if figures else "none") + ".")  # fmt: skip
    return lines


def write_summary(readme: str | Path, lines: Sequence[str]) -> None:
    """Replace the lines between the README's summary markers (a ``ResultsFileError`` without them)."""
    readme = Path(readme)
    text = readme.read_text()
    start, end = text.find(SUMMARY_START), text.find(SUMMARY_END)
    if start < 0 or end < start:
        raise ResultsFileError(f"{readme}: no lines {SUMMARY_START!r} ... {SUMMARY_END!r} to write the summary between")
    head = text[: start + len(SUMMARY_START)]
    readme.write_text(head + "\n" + "\n".join(lines) + "\n" + text[end:])


# ---- the page --------------------------------------------------------------------------------------


def render(page: Page, page_dir: Path, folder: str | Path) -> str:
    """The Markdown of the results page (figure links relative to `page_dir`)."""
    source = Path(folder).as_posix().rstrip("/") + "/"
    lines = [
        "# Results: the paper's comparisons, measured",
        "",
        f"<!-- Generated by `make results` ({TOOL} {source} --out ...) from {source} alone; do not edit. -->",
        "",
        "This page is regenerated by `make results` from the run data in "
        f"[`{source}`]({_relative(Path(folder), page_dir)}) (written by `{EXPORT_TOOL}`, never by hand): no "
        "training and no MLflow store.",
        "",
        "**Read it with these differences from the paper in mind.**",
        "",
        "- **SMAC-lite is a StarCraft-free stand-in.** Every SMAC number here comes from SMAC-lite "
        "(`env.backend=lite`, its version shown per grid; [smac_lite.md](smac_lite.md)), our simulator with "
        "SMAC's maps, units and rules, calibrated on QMIX's win rates against the real game's (5m_vs_6m-lite: "
        "32% at 0.5M, the real game ≈32%). It is not StarCraft II: a map here is `5m_vs_6m-lite`, and its "
        "numbers are not the paper's game.",
        "- **The budget is reduced**: 0.3M env steps on predator-prey and 0.5M on SMAC-lite (preset "
        f"`budget=results`), against the paper's {_steps(PAPER_T_MAX_DEFAULT)} "
        f"({_steps(PAPER_T_MAX['predator_prey'])} on predator-prey); the other hyperparameters are the "
        "paper's (Table 2, preset `budget=paper`), with no per-method tuning.",
        "- **3 seeds** per method (the paper used 4 for its main results, 3 for ablations).",
        "- **The ablation (Fig. 4) runs on 5m_vs_6m-lite**, not on MMM2 as in the paper: MMM2 at 2M steps is "
        "out of reach of this machine.",
        "- Predator-prey reports the test return; SMAC the test win rate in points (%). A run's *final* value "
        "is the mean of its greedy evaluations in the last 10% of its budget.",
        "",
        "## The grids",
        "",
        _grid_overview(page),
        "The last column estimates what the same runs cost at the paper's budget on this machine: each "
        "method's mean CPU-seconds per env step in our runs × the paper's env steps × the planned seeds, "
        "summed over the methods that have runs. It assumes the cost grows linearly with env steps (one "
        "learner update per 8 episodes collected, as here); longer episodes later in training would make it "
        "an underestimate. The paper's grids also have 4 seeds, not 3, and three maps.",
        "",
        "## The paper's claims",
        "",
        claims_module.VERDICT_RULE,
        "",
        "“P(A > B)” is rliable's probability of improvement (the chance a run of A ends above a run of B), "
        "with its 95% stratified-bootstrap CI. “Converges fastest” is measured as the area under the test "
        "curve: the mean test return over the whole budget (trapezoids over the evaluations), so the method "
        "that gets higher sooner has the larger value.",
        "",
        claims_module.claims_markdown(page.measurements),
    ]
    for grid in page.grids:
        lines += _grid_section(grid, page_dir) + _same_configuration_lines(page, grid)
        lines += _cross_grid_lines(page, grid)
    missing = [plan for plan in PAGE_GRIDS if not any(grid.plan is plan for grid in page.grids)]
    if missing:
        lines += ["## Grids not run yet", ""]
        lines += [f"- **{plan.key}. {plan.title}**: no runs exported. Run it with `{plan.train}`"
                  + (f"; MAC-PO's runs come from grid b (`{plan.shared}`)." if plan.shared else ".")
                  for plan in missing]  # fmt: skip
        lines.append("")
    lines += [
        "## Regenerating",
        "",
        "`make results` rewrites this page and its figures from the files in `results/`. A grid's file is "
        f"written and extended by `{EXPORT_TOOL}` from an MLflow store, merging runs by identity (the commands "
        "that wrote each file are listed in it, under `written_by`); "
        "each grid section above says which training command produces its runs.",
        "",
    ]
    return "\n".join(lines)


def _grid_overview(page: Page) -> str:
    header = ["grid", "figure", "file", "runs (present / planned)", "budget (env steps)", "precision", "CPU-hours",
              "CPU-hours at the paper's budget (est.)"]  # fmt: skip
    rows = []
    for grid in page.grids:
        planned = len(grid.plan.methods) * len(grid.plan.seeds) if grid.plan else None
        present = len(grid.records)
        rows.append(
            [
                grid.plan.key if grid.plan else "–",
                grid.spec.title.split(":")[0],
                f"`{grid.results.path.name if grid.results.path else grid.label}`",
                f"{present} / {planned}" + (" (partial)" if planned and _missing_cells(grid) else "")
                if planned
                else str(present),
                _counts(grid.records["t_max"].map(_steps)),
                _counts(grid.records["precision"]),
                _cpu_hours(grid.records),
                _paper_budget_hours(grid),
            ]
        )
    for plan in PAGE_GRIDS:
        if not any(grid.plan is plan for grid in page.grids):
            rows.append([plan.key, plan.title.split(" on ")[0], "–", f"0 / {len(plan.methods) * len(plan.seeds)}",
                         "–", "–", "–", "–"])  # fmt: skip
    return tables.markdown_table(header, rows)


def _grid_section(grid: GridReport, page_dir: Path) -> list[str]:
    records = grid.records
    title = grid.plan.title if grid.plan else f"{grid.spec.title} ({grid.results.grid.describe()})"
    heading = f"## {grid.plan.key}. {title}" if grid.plan else f"## {title}"
    missing = _missing_cells(grid)
    lines = [heading, ""]
    if grid.plan is not None:
        status = "**complete**" if not missing else "**partial**"
        lines.append(
            f"{status}: {len(records)} of {len(grid.plan.methods) * len(grid.plan.seeds)} planned runs "
            f"({len(grid.plan.methods)} methods × seeds {', '.join(map(str, grid.plan.seeds))})."
            + (f" Missing: {missing}." if missing else "")
        )
        extra = sorted(set(grid.selection["method"]) - set(grid.plan.methods))
        if extra:
            lines[-1] += f" Also present (not planned): {', '.join(method_label(m) for m in extra)}."
        lines.append("")
    commits = records["commit"].fillna("unknown").map(lambda c: f"`{c[:10]}{'-dirty' if c.endswith('-dirty') else ''}`")
    lines += [
        f"- file: `{grid.results.path.as_posix() if grid.results.path else grid.label}`; grid "
        f"`{grid.results.grid.describe()}`",
        f"- budget: {_counts(records['t_max'].map(_steps))} env steps (preset `budget={grid.results.grid.budget}`)",
        f"- simulator: {_counts(records['simulator'].replace('', 'predator-prey'))}",
        f"- precision (`trainer.precision`): {_counts(records['precision'])}",
        f"- commit(s): {_counts(commits)}",
        f"- machine(s): {_counts(records['machine'])}",
        f"- measured CPU time: {_cpu_hours(records)} CPU-hours in all (sum of `perf/cpu_seconds`), "
        f"{_per_run_hours(records)} per run",
    ]
    lines.append(f"- marl-eval: the file's `marl_eval` key is marl-eval's JSON; {_marl_eval_fit(grid)}")
    if grid.plan is not None:
        lines.append(f"- run it: `{grid.plan.train}`")
        if grid.plan.shared is not None:
            lines.append(
                f"- MAC-PO's runs are grid b's (the same configuration, trained once), added to this file by "
                f"`{EXPORT_TOOL} ... {grid.plan.shared}`"
            )
    lines.append("")
    if grid.figure_path is not None:
        lines += [f"![{grid.spec.title}]({_relative(grid.figure_path, page_dir)})", ""]
    if grid.scores.empty:
        return lines + ["(no scored runs)", ""]
    lines += [
        f"Final {'win rate (%)' if grid.spec.is_win_rate else 'test return'} per run (mean of the last 10% of "
        "the budget):",
        "",
        _per_seed_markdown(grid),
        "IQM of the final values with its 95% stratified-bootstrap CI and the number of runs (with 3 runs the "
        "IQM is their mean):",
        "",
        tables.performance_markdown(grid.performance),
        "MAC-PO's probability of improvement over each method, with its 95% stratified-bootstrap CI:",
        "",
        tables.improvement_markdown(grid.improvement) if not grid.improvement.empty else _no_improvement(grid),
    ]
    return lines


def _same_configuration_lines(page: Page, grid: GridReport) -> list[str]:
    """For each line of `grid` that is another grid's line by the formulas: do their finals agree per seed?"""
    lines = []
    for same, first_grid in _notes_under(page, grid, SAME_CONFIGURATIONS):
        (first_key, first), (_, second) = same.first, same.second
        finals = [_finals_by_seed(first_grid, first), _finals_by_seed(grid, second)]
        seeds = sorted(set(finals[0]) & set(finals[1]))
        if not seeds:
            continue
        digits = 1 if grid.spec.is_win_rate else 2
        differ = [s for s in seeds if finals[0][s] != finals[1][s]]
        head = (
            f"{method_label(second)} (this grid) and {method_label(first)} (grid {first_key}) are one "
            f"configuration: {same.why}; each was trained under its own grid's name. "
        )
        if differ:
            pairs = ", ".join(f"seed {s}: {finals[1][s]:.{digits}f} vs {finals[0][s]:.{digits}f}" for s in differ)
            body = f"Their final values differ ({pairs}): the runs are not reproducible from the seed alone."
        else:
            values = ", ".join(f"{finals[1][s]:.{digits}f}" for s in seeds)
            body = (
                f"Their final values agree on every seed they share ({', '.join(map(str, seeds))}: {values}): "
                "a run is determined by its configuration and seed, and this grid's claim on the "
                f"{method_label(second)} line is the same comparison as MAC-PO against {method_label(first)} "
                f"in grid {first_key}."
            )
        lines += [head + body, ""]
    return lines


def _cross_grid_lines(page: Page, grid: GridReport, *, reps: int = tables.BOOTSTRAP_REPS) -> list[str]:
    """Under the second grid: A − B with its stratified-bootstrap CI, A and B from two grids."""
    lines = []
    for comparison, first_grid in _notes_under(page, grid, CROSS_GRID_COMPARISONS):
        (first_key, first), (_, second) = comparison.first, comparison.second
        mine, theirs = _finals_by_seed(first_grid, first), _finals_by_seed(grid, second)
        if min(len(mine), len(theirs)) < claims_module.MIN_RUNS:
            continue
        x, y = list(mine.values()), list(theirs.values())
        difference, low, high, probability, p_low, p_high = claims_module.compare(x, y, reps=reps)
        a, b = f"{comparison.first_label} (grid {first_key})", f"{method_label(second)} (this grid)"
        lines += [
            f"Not a claim of the paper, {comparison.why}: {a} {np.mean(x):.1f} against {b} {np.mean(y):.1f} "
            f"(n={len(x)}/{len(y)}); difference {difference:+.1f} [{low:+.1f}, {high:+.1f}], "
            f"P(A > B) {probability:.2f} [{p_low:.2f}, {p_high:.2f}].",
            "",
        ]
    return lines


def _notes_under(page: Page, grid: GridReport, notes: Sequence[GridPairNote]):
    """``(note, the first line's grid)`` for each note whose second line is in `grid` and whose first grid ran."""
    by_key = {other.plan.key: other for other in page.grids if other.plan is not None}
    for note in notes:
        if grid.plan is not None and note.second[0] == grid.plan.key and note.first[0] in by_key:
            yield note, by_key[note.first[0]]


def _finals_by_seed(grid: GridReport, method: str) -> dict[int, float]:
    mine = grid.scores[grid.scores["method"] == method]
    return dict(zip(mine["seed"].astype(int), mine["final"]))


def _per_seed_markdown(grid: GridReport) -> str:
    scores = grid.scores
    seeds = sorted({int(s) for s in scores["seed"].dropna()})
    digits = 1 if grid.spec.is_win_rate else 2
    cpu_seconds = dict(zip(grid.records["run_id"], pd.to_numeric(grid.records["cpu_seconds"], errors="coerce")))
    header = ["method", "task", *(f"seed {s}" for s in seeds), "mean", "CPU-hours per run"]
    rows = []
    for task in dict.fromkeys(scores["task"]):
        for method in ordered_methods(scores.loc[scores["task"] == task, "method"]):
            mine = scores[(scores["task"] == task) & (scores["method"] == method)]
            by_seed = dict(zip(mine["seed"].astype(int), mine["final"]))
            cells = [f"{by_seed[s]:.{digits}f}" if s in by_seed else "–" for s in seeds]
            hours = pd.Series([cpu_seconds.get(run_id) for run_id in mine["run_id"]], dtype=float).dropna() / 3600
            cost = f"{hours.mean():.2f}" if len(hours) else "unknown"
            rows.append([method_label(method), task_label(task), *cells, f"{mine['final'].mean():.{digits}f}", cost])
    return tables.markdown_table(header, rows)


def _no_improvement(grid: GridReport) -> str:
    if (grid.scores["method"] == REFERENCE_METHOD).any():
        return "(no other method to compare MAC-PO with yet)\n"
    return "(no MAC-PO runs yet)\n"


def _missing_cells(grid: GridReport) -> str:
    """``"VDAC (seeds 0, 1, 2), FOP (seed 2)"``; "" when every planned cell has a run."""
    if grid.plan is None:
        return ""
    present = set(zip(grid.selection["method"], grid.selection["seed"].astype(int)))
    parts = []
    for method in grid.plan.methods:
        seeds = [s for s in grid.plan.seeds if (method, s) not in present]
        if seeds:
            word = "seed" if len(seeds) == 1 else "seeds"
            parts.append(f"{method_label(method)} ({word} {', '.join(map(str, seeds))})")
    return ", ".join(parts)


def _marl_eval_fit(grid: GridReport) -> str:
    """Whether marl-eval can aggregate the file's curves; missing runs are said by the section already."""
    uneven = {env: counts for env, counts in evaluation_counts(grid.results.marl_eval).items() if len(counts) > 1}
    if not uneven:
        later = " once the missing runs are in" if _missing_cells(grid) else ""
        return f"its curves line up for marl-eval's aggregation{later}"
    gaps = "; ".join(f"{env}: runs have different numbers of evaluations ({counts})" for env, counts in uneven.items())
    return (
        f"its curves do not line up: {gaps}. A test is played when at least `test_interval` env steps "
        "have passed since the last one, so the number of tests depends on episode lengths; marl-eval takes the "
        "number of steps from one run"
    )


def _counts(values: pd.Series) -> str:
    """``a (3 runs), b (1 run)``, most common first; one value alone is just the value."""
    counts = values.fillna("unknown").astype(str).value_counts()
    if len(counts) == 1:
        return counts.index[0]
    return ", ".join(f"{value} ({n} run{'s' if n > 1 else ''})" for value, n in counts.items())


def _cpu_hours(records: pd.DataFrame) -> str:
    seconds = pd.to_numeric(records["cpu_seconds"], errors="coerce")
    text = f"{seconds.sum() / 3600:.1f}"
    unknown = int(seconds.isna().sum())
    return text if not unknown else f"≥ {text} ({unknown} run(s) without `perf/cpu_seconds`)"


def paper_t_max(environment: str) -> int:
    """The paper's env steps for a run of `environment` (marl-eval's environment name)."""
    return PAPER_T_MAX.get(environment, PAPER_T_MAX_DEFAULT)


def _paper_budget_hours(grid: GridReport) -> str:
    """``≈ 21.3``: the planned runs' CPU-hours at the paper's env steps, from each method's cost per step."""
    if grid.plan is None or grid.scores.empty:
        return "–"
    runs = grid.records
    method = runs["run_id"].map(dict(zip(grid.scores["run_id"], grid.scores["method"])))
    per_step_seconds = pd.to_numeric(runs["cpu_seconds"], errors="coerce") / runs["t_max"].where(runs["t_max"] > 0)
    per_step = (per_step_seconds * runs["environment"].map(paper_t_max)).groupby(method).mean().dropna()
    costed = [m for m in grid.plan.methods if m in per_step]
    if not costed:
        return "unknown"
    hours = sum(per_step[m] for m in costed) * len(grid.plan.seeds) / 3600
    left_out = [method_label(m) for m in grid.plan.methods if m not in per_step]
    return f"≈ {hours:.0f}" + (f" (without {', '.join(left_out)})" if left_out else "")


def _per_run_hours(records: pd.DataFrame) -> str:
    seconds = pd.to_numeric(records["cpu_seconds"], errors="coerce").dropna()
    if seconds.empty:
        return "unknown"
    return f"{seconds.mean() / 3600:.2f} on average ({seconds.min() / 3600:.2f}–{seconds.max() / 3600:.2f})"


def _steps(t_max) -> str:
    if pd.isna(t_max):
        return "unknown"
    return f"{t_max / 1e6:g}M" if t_max >= 1e5 else f"{int(t_max)}"


def _relative(path: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix()


def _grid_order(grid: GridReport):
    plans = list(PAGE_GRIDS)
    return (plans.index(grid.plan) if grid.plan in plans else len(plans), grid.label)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the results page and its figures, print what was written."""
    parser = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="the results folder (files written by python -m analysis.results)")
    parser.add_argument("--out", type=Path, required=True, help="the page to write, e.g. docs/results.md")
    parser.add_argument("--figures", type=Path, default=None, help="figure folder (default: --out without .md)")
    parser.add_argument("--reps", type=int, default=tables.BOOTSTRAP_REPS, help="bootstrap resamples")
    parser.add_argument("--readme", type=Path, default=None, help="also rewrite this README's results summary")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps {args.reps}: needs at least one bootstrap resample")
    try:
        if args.readme is not None and SUMMARY_START not in args.readme.read_text():
            raise ResultsFileError(f"{args.readme}: no line {SUMMARY_START!r} to write the summary after")
        page = write_page(args.folder, args.out, figures=args.figures, reps=args.reps)
        if args.readme is not None:
            write_summary(args.readme, summary_lines(page))
            page.paths.append(args.readme)
    except (ResultsFileError, OSError) as error:
        print(f"{TOOL}: {error}", file=sys.stderr)
        return 1
    for message in page.messages:
        print(message)
    for path in page.paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
