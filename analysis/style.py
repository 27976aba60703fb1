"""Fixed colours, display names and matplotlib settings shared by every figure.

One colour per method across all figures: MAC-PO is the same red in the replay comparison
(where it is a sampler) and in the MARL comparison (where it is an algorithm). A method this
module does not know gets a colour picked by a stable hash of its name, so it too keeps its
colour from one figure, run and machine to the next.
"""

from __future__ import annotations

import zlib

# Method key (sampler or algorithm name) -> colour. Keys shared by a sampler and an algorithm
# (``macpo``) name the same method and so share a colour.
METHOD_COLOURS: dict[str, str] = {
    "macpo": "#d62728",  # red: the paper's method stands out everywhere
    "macpo_approx": "#ff7f0e",  # orange
    "per": "#1f77b4",  # blue
    "pser": "#17becf",  # cyan
    "discor": "#2ca02c",  # green
    "remern": "#9467bd",  # purple
    "uniform": "#7f7f7f",  # grey
    "macpo_reference": "#8c564b",  # brown
    "qmix": "#1f3b73",  # dark blue
    "ow_qmix": "#bcbd22",  # olive
    "cw_qmix": "#e377c2",  # pink
    "qplex": "#008080",  # teal
    "dop": "#6a3d9a",  # dark purple
    "fop": "#b15928",  # rust
    "vdac": "#e6ab02",  # mustard
    "macpo_no_bellman": "#6baed6",  # light blue
    "macpo_no_value": "#74c476",  # light green
    "macpo_no_joint": "#fdae6b",  # light orange
}

# Colours for methods not listed above, chosen by hash; none of them is in METHOD_COLOURS.
FALLBACK_COLOURS: tuple[str, ...] = (
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#31a354",
    "#756bb1",
    "#636363",
    "#e6550d",
    "#969696",
    "#9c9ede",
)

METHOD_LABELS: dict[str, str] = {
    "macpo": "MAC-PO",
    "macpo_approx": "MAC-PO Approx.",
    "per": "PER",
    "pser": "PSER",
    "discor": "DisCor",
    "remern": "ReMERN",
    "uniform": "Uniform",
    "macpo_reference": "MAC-PO (ref. code)",
    "qmix": "QMIX",
    "ow_qmix": "OW-QMIX",
    "cw_qmix": "CW-QMIX",
    "qplex": "QPLEX",
    "dop": "DOP",
    "fop": "FOP",
    "vdac": "VDAC",
    "macpo_no_bellman": "w/o Bellman error",
    "macpo_no_value": "w/o value enhancement",
    "macpo_no_joint": "w/o joint action prob.",
}

TASK_LABELS: dict[str, str] = {
    "3s_vs_5z": "3s_vs_5z",
    "5m_vs_6m": "5m_vs_6m",
    "mmm2": "MMM2",
}

# Matplotlib settings for a figure printed at a paper's column width (3.3 in per column,
# 7 in for a figure spanning both): 8 pt text, thin lines.
PAPER_RC: dict[str, object] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "lines.linewidth": 1.2,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable and searchable
}

COLUMN_WIDTH_IN = 3.3  # one column of a two-column paper; a single-panel figure uses it
PANEL_WIDTH_IN = 2.3  # three panels side by side span both columns (~7 in)
PANEL_HEIGHT_IN = 1.9
BAND_ALPHA = 0.2


def method_colour(method: str) -> str:
    """The fixed colour of `method`; unknown methods get a stable hash-picked colour.

    A composite ``algo+sampler`` (one algorithm run with several samplers) takes its sampler's
    colour when the sampler is known: the sampler is what varies between those lines, and it
    keeps the colour it has in the replay comparison (Figure 1).
    """
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    _, _, sampler = method.partition("+")
    if sampler in METHOD_COLOURS:
        return METHOD_COLOURS[sampler]
    return FALLBACK_COLOURS[zlib.crc32(method.encode()) % len(FALLBACK_COLOURS)]


def method_label(method: str) -> str:
    """Display name of a method key; a composite key ``algo+sampler`` reads ``ALGO (SAMPLER)``."""
    if method in METHOD_LABELS:
        return METHOD_LABELS[method]
    if "+" in method:
        primary, secondary = method.split("+", 1)
        return f"{method_label(primary)} ({method_label(secondary)})"
    return method


def task_label(task: str) -> str:
    """Display name of a task (a SMAC map or a predator-prey setting)."""
    return TASK_LABELS.get(task, task)
