"""The paper's seven MARL methods: ``method=`` presets, the grids that compare them, their figure style."""

import pytest

from analysis.style import FALLBACK_COLOURS, METHOD_COLOURS, method_colour, method_label
from macpo.runs import grids
from macpo.runs.validation import algorithm_classes
from macpo.train import validate

#: method preset → (algorithm, sampler, data path)
PAPER_METHODS = {
    "macpo": ("macpo", "macpo", "replay"),
    "qmix": ("qmix", "uniform", "replay"),
    "ow_qmix": ("ow_qmix", "uniform", "replay"),
    "cw_qmix": ("cw_qmix", "uniform", "replay"),
    "qplex": ("qplex", "uniform", "replay"),
    "dop": ("dop", "uniform", "replay"),
    "fop": ("fop", "uniform", "replay"),
    "vdac": ("vdac", "uniform", "on-policy"),
}


@pytest.mark.parametrize("method", sorted(PAPER_METHODS))
def test_method_preset_pairs_the_algorithm_with_its_sampler(compose_cfg, method):
    algo, sampler, path = PAPER_METHODS[method]
    cfg = compose_cfg([f"method={method}", "env=predator_prey_small"])
    assert (cfg.algo.name, cfg.sampler.name) == (algo, sampler)
    validate(cfg)
    assert algorithm_classes()[algo].on_policy == (path == "on-policy")


@pytest.mark.parametrize("sweep", ["fig2_predator_prey", "fig2_predator_prey_all", "fig3_smac_marl"])
def test_marl_comparison_grids_cover_every_paper_method(sweep):
    methods = grids.sweep_params(sweep)["method"].split(",")
    assert sorted(methods) == sorted(PAPER_METHODS)


def test_every_paper_method_has_its_own_colour_and_label():
    colours = [method_colour(m) for m in PAPER_METHODS]
    assert len(set(colours)) == len(colours)
    assert all(m in METHOD_COLOURS for m in PAPER_METHODS)  # fixed, not hash-picked
    assert not set(colours) & set(FALLBACK_COLOURS)  # an unknown method never takes one of them
    labels = {m: method_label(m) for m in ("qplex", "dop", "fop", "vdac")}
    assert labels == {"qplex": "QPLEX", "dop": "DOP", "fop": "FOP", "vdac": "VDAC"}
