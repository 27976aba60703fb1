"""The simulator version: config check before compute, run tags, and figures that never pool
runs of different simulators."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.figures import draw_selection
from analysis.load import simulator_label
from analysis.selection import FIG3_SMAC_MARL, coverage_note, select_runs, task_simulators
from macpo.envs.smac_lite import SIM_VERSION
from macpo.runs.lifecycle import run_tags
from macpo.train import ConfigError, validate

TINY = ["t_max=100", "batch_size=2", "buffer_size=4", "batch_size_run=1"]


def test_sim_version_is_checked_and_tagged(compose_cfg):
    cfg = compose_cfg([*TINY, "env=5m_vs_6m", "algo=qmix", "sampler=uniform"])
    validate(cfg)
    tags = run_tags(cfg)
    assert tags["env.sim_version"] == str(SIM_VERSION) and tags["env.backend"] == "lite"
    with pytest.raises(ConfigError, match=f"simulates SMAC-lite version {SIM_VERSION}"):
        validate(compose_cfg([*TINY, "env=5m_vs_6m", "algo=qmix", "sampler=uniform", "env.sim_version=1"]))
    assert "env.sim_version" not in run_tags(compose_cfg([*TINY, "env=predator_prey_small"]))


def test_simulator_label():
    assert simulator_label({"map_name": "3m", "env.backend": "lite", "env.sim_version": "2"}) == "lite v2"
    assert simulator_label({"map_name": "3m"}) == "lite v1"  # SMAC-lite runs from before the tag
    assert simulator_label({"map_name": "3m", "env.backend": "smax", "env.sim_version": "2"}) == "smax"
    assert simulator_label({"env": "predator_prey"}) == ""


def points(simulators: dict[str, str]) -> pd.DataFrame:
    rows = []
    for run_id, simulator in simulators.items():
        for step in (10_000, 20_000):
            rows.append({"run_id": run_id, "env": "5m_vs_6m", "algo": "qmix", "sampler": "uniform", "seed": 0,
                         "punishment": float("nan"), "sweep": "none", "status": "FINISHED", "t_max": 20_000,
                         "simulator": simulator, "step": step, "metric": "test/battle_won_mean", "value": 0.5})
    return pd.DataFrame(rows)


def test_runs_of_two_simulators_are_separate_panels_and_said_so():
    one = select_runs(points({"a": "lite v2", "b": "lite v2"}), FIG3_SMAC_MARL)
    assert set(one["task"]) == {"5m_vs_6m"} and task_simulators(one) == {"5m_vs_6m": "lite v2"}
    assert draw_selection(one, FIG3_SMAC_MARL).axes[0].get_title() == "5m_vs_6m (lite v2)"

    mixed = select_runs(points({"a": "lite v1", "b": "lite v2"}), FIG3_SMAC_MARL)
    assert set(mixed["task"]) == {"5m_vs_6m [lite v1]", "5m_vs_6m [lite v2]"}
    note = coverage_note(mixed, FIG3_SMAC_MARL)
    assert "several simulators on 5m_vs_6m" in note and "no runs on 5m_vs_6m" not in note
