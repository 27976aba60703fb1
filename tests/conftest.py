"""Shared fixtures: compose the real Hydra config, run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import macpo.config  # noqa: F401 - puts the config schemas in Hydra's ConfigStore (conf/train.yaml names them)
from macpo.algos.base import MarlAlgorithm
from macpo.config.paths import CONF_DIR

# One intra-op thread: the suite's tensors are small, and on a shared 2-core machine two OpenMP
# threads spin against other processes (measured: a GRU forward 20x slower under load).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONF = CONF_DIR

#: a run small enough for tests: a few seconds on one core
TINY = [
    "env=predator_prey_small", "t_max=1500", "batch_size=8", "buffer_size=64", "batch_size_run=4",
    "test_interval=500", "test_nepisode=4", "log_interval=500", "target_update_interval=20",
    "progress_bar=false",
]  # fmt: skip


@pytest.fixture
def compose_cfg():
    """compose_cfg(overrides) -> DictConfig, exactly as ``python -m macpo.train`` would see it."""

    def _compose(overrides=()):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides), return_hydra_config=False)

    return _compose


def run_cli(args, cwd=REPO, timeout=600, env_extra=None):
    """Run ``python -m macpo.train`` (or another module) and return the CompletedProcess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def crash_once_after(monkeypatch):
    """crash_once_after(step): the next metric write at or after ``step`` env steps raises, once."""

    def arm(step: int):
        original = MarlAlgorithm.flush_logs
        state = {"armed": True}

        def flush_then_crash(self):
            original(self)
            if state["armed"] and self.env_steps >= step:
                state["armed"] = False
                raise RuntimeError("simulated crash")

        monkeypatch.setattr(MarlAlgorithm, "flush_logs", flush_then_crash)
        return state

    return arm
