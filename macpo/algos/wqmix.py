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
from macpo.algos.qmix import QMIX
from macpo.nn.central_q import CentralQ
from macpo.nn.packing import EpisodePacking
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
        """WQMIX's α-weights [*] for the QMIX loss (1 where the scheme keeps full weight).

        td, y, q_star_greedy [*]; taken, greedy [*, N] (* = b, T or packed rows)."""
        if self.weighting == "none":
            return torch.ones_like(td)
        if self.weighting == "ow":
            return torch.where(td < 0, torch.ones_like(td), torch.full_like(td, self.w))
        is_greedy = (taken == greedy).all(-1)  # [*]
        keep = is_greedy | (y > q_star_greedy)
        return torch.where(keep, torch.ones_like(td), torch.full_like(td, self.w))

    def compute_loss(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        """As QMIX's, on packed rows; Q* and its target run on real timesteps only too."""
        pk = EpisodePacking(batch["filled"])
        inputs = pk.agent_inputs(batch["obs"], batch["actions"], self.info.n_actions)  # [R_obs, N, I]
        actions = pk.pack_obs(batch["actions"]).long()  # [R_obs, N]
        avail = pk.pack_obs(batch["avail_actions"]).bool()  # [R_obs, N, A]
        state = pk.pack_obs(batch["state"]).float()  # [R_obs, S]
        tr, nxt = pk.trans_in_obs, pk.next_in_obs  # [R] observation rows of each transition and its successor
        taken, state_tr = actions[tr], state[tr]  # [R, N], [R, S]

        q = self.agent.forward_packed(inputs, pk.obs_steps)  # [R_obs, N, A]
        chosen = q.gather(-1, actions[..., None]).squeeze(-1)[tr]  # [R, N]
        q_tot = self.mixer(chosen, state_tr).float()  # [R]
        central_utils = self.central.utilities_packed(inputs, pk.obs_steps)  # [R_obs, N, A]
        q_star = self.central.value(central_utils[tr], taken, state_tr).float()  # [R]
        del central_utils

        with torch.no_grad():
            greedy = q.detach().masked_fill(~avail, float("-inf")).argmax(-1)  # [R_obs, N]
            target_utils = self.target_central.utilities_packed(inputs, pk.obs_steps)  # [R_obs, N, A]
            target_star = self.target_central.value(target_utils, greedy, state).float()  # [R_obs]
            del target_utils
            y = pk.td_lambda_targets(pk.pack_trans(batch["reward"]), pk.pack_trans(batch["terminated"]),
                                     target_star[nxt], self.gamma, self.td_lambda)  # [R] float32  # fmt: skip

        td = q_tot - y  # [R]
        central_td = q_star - y  # [R]
        signals = Signals(mask=pk.pad_mask(), td=pk.unpack(td.detach()), q_tot=pk.unpack(q_tot.detach()),
                          q_star=pk.unpack(q_star.detach()))  # fmt: skip
        if "pi" in self.sampler.needs:
            signals.pi = pk.unpack(self.sampler.taken_action_probs(q[tr].detach(), taken, avail[tr]))  # [b, T, N]
        w_sampler = self.sampler.loss_weights(signals, is_weights).flatten()[pk.trans_pad_index]  # [R]
        w_scheme = self.qmix_weights(td.detach(), y, taken, greedy[tr], target_star[tr])  # [R]

        qmix_loss = pk.masked_rows(w_sampler * w_scheme * td.pow(2))
        central_loss = pk.masked_rows(central_td.pow(2))
        loss = qmix_loss + self.central_loss_coef * central_loss
        metrics = {
            "loss": loss.detach(),
            "qmix_loss": qmix_loss.detach(),
            "central_loss": central_loss.detach(),
            "td_error_abs": pk.masked_rows(td.detach().abs()),
            "q_taken_mean": pk.masked_rows(q_tot.detach()),
            "q_star_mean": pk.masked_rows(q_star.detach()),
            "target_mean": pk.masked_rows(y),
            "wqmix_weight_mean": pk.masked_rows(w_scheme),
        }
        return LossOutput(loss, signals, metrics)
