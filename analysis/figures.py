"""The paper's Figures 1-4 (and their tables) from an MLflow store; CLI ``python -m analysis.figures``.

Each figure has one panel per task (SMAC map, or predator-prey setting) and one line per
method (mean over runs, 95% bootstrap CI band), steps aligned on a common grid
(``analysis.curves``). Which runs make which figure is ``analysis.selection``'s business; a
figure with no runs is skipped with one line saying what it needs, and a partial grid is drawn
with what exists. ``write_report`` also writes the final-performance tables, MAC-PO's
probability of improvement and the recomputed headline sentences (``analysis.tables``).

    python -m analysis.figures --tracking-uri sqlite:///outputs/mlflow.db --out outputs/figures
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis import tables
from analysis.curves import learning_curves
from analysis.load import (
    DEFAULT_CACHE_DIR,
    add_run_selection_arguments,
    load_runs,
    selected_statuses,
)
from analysis.selection import (
    FIG1_REPLAY,
    FIG2_PREDATOR_PREY,
    FIG3_SMAC_MARL,
    FIG4_ABLATION,
    FIGURES,
    REFERENCE_METHOD,
    FigureSpec,
    coverage_note,
    missing_message,
    ordered_methods,
    ordered_tasks,
    select_runs,
    task_simulators,
)
from analysis.style import (
    BAND_ALPHA,
    COLUMN_WIDTH_IN,
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    PAPER_RC,
    method_colour,
    method_label,
    task_label,
)
from macpo.runs.tracking import StoreError

DEFAULT_OUT = Path("outputs/figures")
FORMATS = ("png", "pdf")
PLOTTED_METRICS = tuple(dict.fromkeys(spec.metric for spec in FIGURES))


class MissingRunsError(ValueError):
    """A figure has no runs (or none logs its metric); the message says what it needs."""


def draw_figure(points: pd.DataFrame, spec: FigureSpec, *, confidence: float = 0.95) -> Figure:
    """`spec`'s figure from a tidy frame (``analysis.load``): panels per task, lines per method."""
    selection = select_runs(points, spec)
    if selection.empty:
        raise MissingRunsError(missing_message(points, spec))
    return draw_selection(selection, spec, confidence=confidence)


def draw_selection(selection: pd.DataFrame, spec: FigureSpec, *, confidence: float = 0.95) -> Figure:
    """Draw `spec` from its already selected points (``analysis.selection.select_runs``)."""
    curves = learning_curves(selection, confidence=confidence)
    tasks = ordered_tasks(selection, spec)
    methods = ordered_methods(selection["method"])
    simulators = task_simulators(selection)

    columns = len(tasks) if len(tasks) <= 3 else (2 if len(tasks) == 4 else 3)
    rows = math.ceil(len(tasks) / columns)
    with sns.axes_style("whitegrid", {"grid.linestyle": ":"}), sns.plotting_context(rc=PAPER_RC):
        width = COLUMN_WIDTH_IN if columns == 1 else PANEL_WIDTH_IN * columns  # 1 panel: 1 paper column
        figure = Figure(figsize=(width, PANEL_HEIGHT_IN * rows + 0.5), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False)
        for index, ax in enumerate(axes.flat):
            if index >= len(tasks):
                ax.set_visible(False)
                continue
            task = tasks[index]
            in_task = curves[curves["task"] == task]
            for method in methods:
                curve = in_task[in_task["method"] == method]
                if curve.empty:
                    continue
                colour = method_colour(method)
                ax.fill_between(curve["step"], curve["ci_low"], curve["ci_high"], color=colour, alpha=BAND_ALPHA, lw=0)
                ax.plot(curve["step"], curve["mean"], color=colour, label=method_label(method))
            simulator = simulators.get(task, "")  # SMAC: which simulator (lite version, smax, sc2)
            ax.set_title(task_label(task) + (f" ({simulator})" if simulator and "[" not in task else ""))
            ax.xaxis.set_major_formatter(FuncFormatter(_format_steps))
            if index % columns == 0:
                ax.set_ylabel(spec.y_label)
            if index // columns == rows - 1 or index + columns >= len(tasks):
                ax.set_xlabel("Environment steps")
            if spec.is_win_rate:
                ax.set_ylim(-2, 102)
        handles = [line for method in methods for line in _first_line(axes, method_label(method)) if line is not None]
        figure.legend(
            handles=handles,
            labels=[h.get_label() for h in handles],
            loc="outside lower center",
            ncols=_legend_columns([h.get_label() for h in handles], width),
            frameon=False,
        )
    figure.set_label(spec.name)
    return figure


def replay_figure(points: pd.DataFrame) -> Figure:
    """Figure 1: test win rate of each replay sampler (MAC-PO backbone), per SMAC map."""
    return draw_figure(points, FIG1_REPLAY)


def predator_prey_figure(points: pd.DataFrame) -> Figure:
    """Figure 2: predator-prey test return of each algorithm, per punishment."""
    return draw_figure(points, FIG2_PREDATOR_PREY)


def smac_marl_figure(points: pd.DataFrame) -> Figure:
    """Figure 3: test win rate of each MARL algorithm, per SMAC map."""
    return draw_figure(points, FIG3_SMAC_MARL)


def ablation_figure(points: pd.DataFrame) -> Figure:
    """Figure 4: MAC-PO with one weight term disabled at a time (MMM2 in the paper)."""
    return draw_figure(points, FIG4_ABLATION)


@dataclass
class Report:
    """Everything `write_report` made: figures, tables, headlines, messages, files written."""

    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    markdown: dict[str, str] = field(default_factory=dict)
    headlines: list[tables.Headline] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def write_report(
    points: pd.DataFrame,
    out: str | Path | None = DEFAULT_OUT,
    *,
    reps: int = tables.BOOTSTRAP_REPS,
    formats: Sequence[str] = FORMATS,
) -> Report:
    """Every figure and table that `points` supports; files under `out` (None: write nothing).

    Per figure ``<name>.{png,pdf}``, ``<name>_final_performance.{csv,md}``,
    ``<name>_improvement.{csv,md}``; then ``headlines.{csv,md}``.
    """
    unknown = set(formats) - {"png", "pdf", "svg"}
    if unknown:
        raise ValueError(f"formats: unsupported {sorted(unknown)}; choose from png, pdf, svg")
    report = Report()
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    for spec in FIGURES:
        selection = select_runs(points, spec)
        if selection.empty:
            report.messages.append(missing_message(points, spec))
            continue
        figure = draw_selection(selection, spec)
        note = coverage_note(selection, spec)
        if note:
            report.messages.append(note)
        report.figures[spec.name] = figure

        scores = tables.final_scores(selection)
        if scores.attrs["unscored"]:
            report.messages.append(
                f"{spec.name}: {len(scores.attrs['unscored'])} unfinished run(s) without points in the "
                "last 10% of their budget left out of the tables"
            )
        performance = tables.final_performance_table(scores, aggregate=spec.is_win_rate, reps=reps)
        improvement = tables.improvement_table(scores, reps=reps)
        report.tables[f"{spec.name}_final_performance"] = performance
        report.tables[f"{spec.name}_improvement"] = improvement
        report.markdown[f"{spec.name}_final_performance"] = tables.performance_markdown(performance)
        report.markdown[f"{spec.name}_improvement"] = tables.improvement_markdown(improvement)
        if not (scores["method"] == REFERENCE_METHOD).any():
            report.messages.append(f"{spec.name}: no MAC-PO runs, so no probability of improvement")
        report.headlines.extend(tables.headlines(scores, spec))

        if out_dir is not None:
            for fmt in formats:
                path = out_dir / f"{spec.name}.{fmt}"
                figure.savefig(path, dpi=300, bbox_inches="tight")
                report.paths.append(path)
    report.tables["headlines"] = tables.headline_table(report.headlines)
    report.markdown["headlines"] = _headlines_markdown(report.headlines)

    if out_dir is not None and report.figures:
        for name, table in report.tables.items():
            path = out_dir / f"{name}.csv"
            table.to_csv(path, index=False)
            report.paths.append(path)
            path = out_dir / f"{name}.md"
            path.write_text(report.markdown[name])
            report.paths.append(path)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: load the store, write every figure and table, print the paths written."""
    parser = argparse.ArgumentParser(prog="python -m analysis.figures", description=__doc__.split("\n")[0])
    add_run_selection_arguments(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--reps", type=int, default=tables.BOOTSTRAP_REPS, help="bootstrap resamples")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="history cache folder (default: .analysis_cache beside a SQLite store)")
    parser.add_argument("--no-cache", action="store_true", help="read every history from the store")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps {args.reps}: needs at least one bootstrap resample")
    statuses = selected_statuses(args.status)

    try:
        points = load_runs(
            args.tracking_uri,
            args.experiment,
            sweep=args.sweep,
            metrics=PLOTTED_METRICS,
            cache_dir=None if args.no_cache else args.cache_dir or DEFAULT_CACHE_DIR,
            progress=not args.no_progress,
        )
    except StoreError as error:  # one line and exit code 2, as every read-only command
        print(f"python -m analysis.figures: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        parser.error(str(error))
    if statuses is not None:
        wanted = {status.upper() for status in statuses}
        left_out = points.loc[~points["status"].isin(wanted)].drop_duplicates("run_id")["status"]
        if len(left_out):
            counts = ", ".join(f"{n} {status}" for status, n in left_out.value_counts().sort_index().items())
            print(f"left out {counts} run(s) (--status {args.status}; --status all includes them)")
        points = points[points["status"].isin(wanted)]
    if points.empty:
        print(
            f"no runs with {' or '.join(PLOTTED_METRICS)} points in experiment {args.experiment!r}",
            file=sys.stderr,
        )
        return 1
    report = write_report(points, args.out, reps=args.reps)
    for message in report.messages:
        print(message)
    for path in report.paths:
        print(path)
    for headline in report.headlines:
        print(headline.sentence)
    return 0 if report.figures else 1


def _headlines_markdown(found: list[tables.Headline]) -> str:
    """The recomputed claims, under one heading per figure."""
    if not found:
        return "(no figure has both MAC-PO and another method)\n"
    lines = []
    for spec in FIGURES:
        mine = [h for h in found if h.figure == spec.name]
        if mine:
            lines += [f"### {spec.title}", "", *(f"- {h.sentence}" for h in mine), ""]
    return "\n".join(lines)


def _legend_columns(labels: list[str], width_in: float) -> int:
    """As many legend columns as fit the figure width at the legend's font size (at most 4)."""
    column_in = 0.45 + 0.05 * max(len(label) for label in labels)  # handle + text at 7 pt
    return max(1, min(len(labels), 4, int(width_in / column_in)))


def _first_line(axes, label: str):
    """The first line labelled `label` in any panel (one legend entry per method)."""
    for ax in axes.flat:
        for line in ax.get_lines():
            if line.get_label() == label:
                return [line]
    return [None]


def _format_steps(value: float, _position) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


if __name__ == "__main__":
    raise SystemExit(main())
