"""MAC-PO (Mei et al., AAMAS 2023): the Weighted-QMIX backbone with no α-weighting; the QMIX
loss is weighted per timestep only by the replay sampler (``sampler=macpo`` by default), whose
weights need δ, Q* and the agents' Boltzmann probabilities — all of which this module provides."""

from __future__ import annotations

from macpo.algos.base import LoopSettings
from macpo.algos.wqmix import WQMIX
from macpo.config.schema import CentralQConfig
from macpo.envs.base import BatchedEnv
from macpo.replay.samplers.base import Sampler


class MACPO(WQMIX):
    config_class = CentralQConfig  # WQMIX's keys without weighting and w
    preset = "macpo"
    weighting = "none"  # no α-weighting: the replay sampler weighs the QMIX loss

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings,
                 cfg: CentralQConfig | None = None, **overrides) -> None:  # fmt: skip
        if overrides.pop("weighting", "none") != "none":
            raise ValueError("algo=macpo takes its weights from the sampler; use algo=ow_qmix/cw_qmix for WQMIX")
        super().__init__(train_env, sampler, loop, cfg, **overrides)
