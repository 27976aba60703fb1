"""Weighted QMIX (Rashid et al. 2020): QMIX trained towards targets of an unrestricted Q*.

Both losses use TD(λ) targets from the *target* central Q*, evaluated at the joint action the
QMIX agents would pick (the online agents with ``double_q``, else the target agents). The QMIX
loss down-weights some transitions by α:
OW-QMIX (``weighting: ow``): w = α where Q_tot ≥ y (overestimates);
CW-QMIX (``weighting: cw``): w = α unless the taken joint action is the greedy one or
y > Q*(s, greedy); ``weighting: none`` keeps w = 1 (the MAC-PO backbone). The sampler's
per-timestep weights multiply in on top. Q* learns from its own unweighted loss.
Target networks: the central Q* only (plus the QMIX agent when ``double_q`` is false).
"""

from __future__ import annotations

import torch

from macpo.algos.base import LoopSettings, PackedBatch
from macpo.algos.qmix import QMIX
from macpo.algos.value_based import ValueForward
from macpo.config.schema import CentralQConfig, WqmixConfig
from macpo.envs.base import BatchedEnv
from macpo.nn.central_q import CentralQ
from macpo.replay.samplers.base import Sampler


class WQMIX(QMIX):
    provides = frozenset({"td", "q_star", "pi"})
    td_loss_name = "qmix_loss"
    scheme_weight_name = "wqmix_weight_mean"
    config_class = WqmixConfig
    preset = "ow_qmix"

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings,
                 cfg: CentralQConfig | None = None, **overrides) -> None:  # fmt: skip
        super().__init__(train_env, sampler, loop, cfg, **overrides)
        cfg = self.cfg
        self.central_loss_coef = cfg.central_loss_coef
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.central = CentralQ(o + a + n, n, a, s, cfg.central_agent_hidden_dim, cfg.central_embed_dim)
        # the targets come from Q*: the QMIX mixer's target is never read, its agent's only without double-Q
        self.drop_target("mixer")
        if self.double_q:
            self.drop_target("agent")
        self.add_target("central")

    @property
    def weighting(self) -> str:
        """ow | cw | none: which transitions the QMIX loss down-weights by α (``cfg.w``)."""
        return self.cfg.weighting

    def qmix_weights(self, td, y, taken, greedy, q_star_greedy) -> torch.Tensor:
        """WQMIX's α-weights [*] for the QMIX loss (1 where the scheme keeps full weight).

        td, y, q_star_greedy [*]; taken, greedy [*, N] (* = transition rows, or b, T)."""
        if self.weighting == "none":
            return torch.ones_like(td)
        if self.weighting == "ow":
            return torch.where(td < 0, torch.ones_like(td), torch.full_like(td, self.cfg.w))
        is_greedy = (taken == greedy).all(-1)  # [*]
        keep = is_greedy | (y > q_star_greedy)
        return torch.where(keep, torch.ones_like(td), torch.full_like(td, self.cfg.w))

    def forward_values(self, ep: PackedBatch) -> ValueForward:
        fwd = super().forward_values(ep)
        central_utils = self.central.utilities_packed(ep.inputs, ep.steps)  # [R_obs, N, A]
        fwd.q_star = self.central.value(central_utils[ep.tr], ep.taken, ep.state_tr)  # [R]
        return fwd

    def targets(self, ep: PackedBatch, fwd: ValueForward) -> torch.Tensor:
        chooser = fwd.agent_qs if self.double_q else self.target_agent.forward_packed(ep.inputs, ep.steps)
        greedy = self.greedy_actions(chooser, ep.avail)  # [R_obs, N]
        target_utils = self.target_central.utilities_packed(ep.inputs, ep.steps)  # [R_obs, N, A]
        target_star = self.target_central.value(target_utils, greedy, ep.state).float()  # [R_obs]
        fwd.extras.update(greedy=greedy, target_star=target_star)
        return self.lambda_returns(ep, target_star[ep.nxt])  # [R]

    def scheme_weights(self, ep: PackedBatch, fwd: ValueForward, y: torch.Tensor, td: torch.Tensor):
        greedy, target_star = fwd.extras["greedy"], fwd.extras["target_star"]
        return self.qmix_weights(td, y, ep.taken, greedy[ep.tr], target_star[ep.tr])  # [R]

    def extra_losses(self, ep: PackedBatch, fwd: ValueForward, y: torch.Tensor) -> dict:
        return {"central_loss": (self.central_loss_coef, ep.mean((fwd.q_star.float() - y).pow(2)))}
