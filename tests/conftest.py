"""Shared fixtures: compose the real Hydra config, crash a run on purpose. Shared helpers: ``helpers.py``."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

import macpo.config  # noqa: F401 - puts the config schemas in Hydra's ConfigStore (conf/train.yaml names them)
from macpo.algos.base import MarlAlgorithm
from macpo.config.paths import CONF_DIR
from macpo.nn.kernels import cap_kernel_caches

# One intra-op thread: the suite's tensors are small, and on a shared 2-core machine two OpenMP
# threads spin against other processes (measured: a GRU forward 20x slower under load).
torch.set_num_threads(1)
cap_kernel_caches()  # as a run does: the suite's packed batches meet many matmul shapes


@pytest.fixture
def compose_cfg():
    """compose_cfg(overrides) -> DictConfig, exactly as ``python -m macpo.train`` would see it."""

    def _compose(overrides=()):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides), return_hydra_config=False)

    return _compose


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
