"""Weighted QMIX (Rashid et al. 2020): QMIX trained towards targets of an unrestricted Q*.

Both losses use TD(λ) targets from the *target* central Q*, evaluated at the joint action the
online QMIX agents would pick (double-Q). The QMIX loss down-weights some transitions by α:
OW-QMIX (``weighting: ow``): w = α where Q_tot ≥ y (overestimates);
CW-QMIX (``weighting: cw``): w = α unless the taken joint action is the greedy one or
y > Q*(s, greedy); ``weighting: none`` keeps w = 1 (the MAC-PO backbone). The sampler's
per-timestep weights multiply in on top. Q* learns from its own unweighted loss.
"""

from __future__ import annotations

import copy

import torch

from macpo.algos.base import LossOutput
from macpo.algos.qmix import QMIX, masked_mean
from macpo.nn.agent import agent_inputs
from macpo.nn.central_q import CentralQ
from macpo.nn.targets import td_lambda_targets
from macpo.replay.signals import Signals

WEIGHTINGS = ("ow", "cw", "none")


class WQMIX(QMIX):
    provides = frozenset({"td", "q_star", "pi"})

    def __init__(
        self,
        *args,
        weighting: str = "ow",
        w: float = 0.5,
        central_embed_dim: int = 256,
        central_agent_hidden_dim: int = 64,
        central_loss_coef: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"algo.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if not 0.0 < w <= 1.0:
            raise ValueError(f"algo.w (the down-weighting α) must be in (0, 1], got {w}")
        self.weighting, self.w, self.central_loss_coef = weighting, w, central_loss_coef
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.central = CentralQ(o + a + n, n, a, s, central_agent_hidden_dim, central_embed_dim)
        self.target_central = copy.deepcopy(self.central).requires_grad_(False)

    def online_parameters(self) -> list[torch.nn.Parameter]:
        return [*super().online_parameters(), *self.central.parameters()]

    def update_targets(self) -> None:
        super().update_targets()
        self.target_central.load_state_dict(self.central.state_dict())

    def qmix_weights(self, td, y, taken, greedy, q_star_greedy) -> torch.Tensor:
        """WQMIX's α-weights [b, T] for the QMIX loss (1 where the scheme keeps full weight)."""
        if self.weighting == "none":
            return torch.ones_like(td)
        if self.weighting == "ow":
            return torch.where(td < 0, torch.ones_like(td), torch.full_like(td, self.w))
        is_greedy = (taken == greedy).all(-1)  # [b, T]
        keep = is_greedy | (y > q_star_greedy)
        return torch.where(keep, torch.ones_like(td), torch.full_like(td, self.w))

    def compute_loss(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        actions, avail, state = batch["actions"], batch["avail_actions"], batch["state"]
        taken = actions[:, :-1]  # [b, T, N]
        reward = batch["reward"][:, :-1]  # [b, T]
        terminated = batch["terminated"][:, :-1].float()
        mask = batch["filled"][:, :-1].float()

        inputs = agent_inputs(batch["obs"], actions, self.info.n_actions)  # [b, T+1, N, I]
        q, _ = self.agent(inputs)  # [b, T+1, N, A]
        chosen = q[:, :-1].gather(-1, taken[..., None]).squeeze(-1)  # [b, T, N]
        q_tot = self.mixer(chosen, state[:, :-1])  # [b, T]
        central_utils = self.central.utilities(inputs)  # [b, T+1, N, A]
        q_star = self.central.value(central_utils[:, :-1], taken, state[:, :-1])  # [b, T]

        with torch.no_grad():
            greedy = q.detach().masked_fill(~avail, float("-inf")).argmax(-1)  # [b, T+1, N]
            target_utils = self.target_central.utilities(inputs)  # [b, T+1, N, A]
            target_star = self.target_central.value(target_utils, greedy, state)  # [b, T+1]
            y = td_lambda_targets(reward, terminated, mask, target_star, self.gamma, self.td_lambda)  # [b, T]

        td = q_tot - y  # [b, T]
        central_td = q_star - y  # [b, T]
        signals = Signals(mask=mask, td=td.detach(), q_tot=q_tot.detach(), q_star=q_star.detach())
        if "pi" in self.sampler.needs:
            signals.pi = self.sampler.taken_action_probs(q[:, :-1].detach(), taken, avail[:, :-1])
        w_sampler = self.sampler.loss_weights(signals, is_weights)  # [b, T]
        w_scheme = self.qmix_weights(td.detach(), y, taken, greedy[:, :-1], target_star[:, :-1])  # [b, T]

        qmix_loss = masked_mean(w_sampler * w_scheme * td.pow(2), mask)
        central_loss = masked_mean(central_td.pow(2), mask)
        loss = qmix_loss + self.central_loss_coef * central_loss
        metrics = {
            "loss": loss.detach(),
            "qmix_loss": qmix_loss.detach(),
            "central_loss": central_loss.detach(),
            "td_error_abs": masked_mean(td.detach().abs(), mask),
            "q_taken_mean": masked_mean(q_tot.detach(), mask),
            "q_star_mean": masked_mean(q_star.detach(), mask),
            "target_mean": masked_mean(y, mask),
            "wqmix_weight_mean": masked_mean(w_scheme, mask),
        }
        return LossOutput(loss, signals, metrics)
