"""ValueDecomposition: the loss template every value-based learner (QMIX, WQMIX, MAC-PO, QPLEX) fills in.

One update = ``forward_values`` (online utilities and the mixed Q_tot of the taken joint actions)
→ ``targets`` (under no_grad, from target networks) → the sampler's weights (built here, once,
through ``MarlAlgorithm.weigh``) × the method's ``scheme_weights`` → the weighted TD loss plus any
``extra_losses`` → one optimiser step. Exploration is ε-greedy over the shared agent's utilities,
ε annealed linearly in env steps.

Every step reads a ``PackedBatch``: the recurrent agents run on observation rows [R_obs] (each
episode's timesteps and its final observation, no padding) and the mixers, targets and losses on
transition rows [R] (``macpo.nn.packing``), so an update costs the timesteps actually played.
Targets, λ-returns, the loss reduction and the sampler's signals are float32 also under bf16.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from macpo.algos.base import LoopSettings, LossOutput, MarlAlgorithm, OptimiserSpec, PackedBatch
from macpo.algos.policy import EpsilonGreedyPolicy
from macpo.envs.base import BatchedEnv
from macpo.nn.agent import RNNAgent
from macpo.replay.samplers.base import Sampler


@dataclass
class ValueForward:
    """The online networks' outputs for one batch."""

    agent_qs: torch.Tensor  # [R_obs, N, A] per-agent utilities on every observation row
    q_tot: torch.Tensor  # [R] mixed value of the taken joint actions (transition rows)
    q_star: torch.Tensor | None = None  # [R] an unrestricted central estimate (WQMIX family)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # what targets/weights share


class ValueDecomposition(MarlAlgorithm, abstract=True):
    """ε-greedy value decomposition with a shared recurrent agent and TD(λ) targets."""

    provides = frozenset({"td", "pi"})
    #: metric names of the TD part of the loss and of the scheme's weights (when the method has them)
    td_loss_name: ClassVar[str] = "td_loss"
    scheme_weight_name: ClassVar[str] = "scheme_weight_mean"

    def __init__(
        self,
        train_env: BatchedEnv,
        sampler: Sampler,
        loop: LoopSettings,
        name: str,
        lr: float = 1e-3,
        gamma: float = 0.99,
        td_lambda: float = 0.6,
        double_q: bool = True,
        agent_hidden_dim: int = 64,
        agent_q_clamp: list[float] | None = None,
        grad_clip: float = 10.0,
        epsilon_start: float = 1.0,
        epsilon_finish: float = 0.05,
        epsilon_anneal_time: int = 100_000,
        optimiser: str = "adam",
        optimiser_options: dict | None = None,
    ) -> None:
        super().__init__(train_env, sampler, loop)
        self.name, self.lr, self.gamma, self.td_lambda = name, lr, gamma, td_lambda
        self.double_q, self.grad_clip = double_q, grad_clip
        self.optimiser_kind, self.optimiser_options = optimiser, dict(optimiser_options or {})
        OptimiserSpec([], lr, kind=optimiser, options=self.optimiser_options)  # bad settings fail here
        self.eps_start, self.eps_finish, self.eps_time = epsilon_start, epsilon_finish, max(1, epsilon_anneal_time)
        n, a, o = self.info.n_agents, self.info.n_actions, self.info.obs_shape
        self.agent = RNNAgent(o + a + n, a, agent_hidden_dim, agent_q_clamp)

    # ---- to implement -----------------------------------------------------------------
    @abstractmethod
    def forward_values(self, ep: PackedBatch) -> ValueForward:
        """Online utilities [R_obs, N, A] and Q_tot [R] of the taken joint actions (with grad)."""

    @abstractmethod
    def targets(self, ep: PackedBatch, fwd: ValueForward) -> torch.Tensor:
        """Regression targets y [R] (called under no_grad); may leave values in ``fwd.extras``."""

    def scheme_weights(self, ep: PackedBatch, fwd: ValueForward, y: torch.Tensor, td: torch.Tensor):
        """The method's own per-transition weights [R] on the TD loss (None: all ones)."""
        return None

    def extra_losses(self, ep: PackedBatch, fwd: ValueForward, y: torch.Tensor) -> dict[str, tuple]:
        """Further losses added to the TD loss: name → (coefficient, loss); each is logged unscaled."""
        return {}

    # ---- exploration --------------------------------------------------------------------
    def acting_agent(self) -> torch.nn.Module:
        """The online agent network the Collector plays with."""
        return self.agent

    def epsilon(self) -> float:
        frac = min(1.0, self.env_steps / self.eps_time)
        return self.eps_start + frac * (self.eps_finish - self.eps_start)

    def exploration_metrics(self) -> dict[str, float]:
        return {"epsilon": self.epsilon()}

    def explore_policy(self) -> EpsilonGreedyPolicy:
        return EpsilonGreedyPolicy(self.acting_agent(), self.info.n_agents, self.info.n_actions, self.epsilon)

    def greedy_policy(self) -> EpsilonGreedyPolicy:
        return EpsilonGreedyPolicy(self.acting_agent(), self.info.n_agents, self.info.n_actions, lambda: 0.0)

    # ---- optimisation -------------------------------------------------------------------
    def online_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the optimiser trains: every trainable one (target networks are frozen)."""
        return [p for p in self.parameters() if p.requires_grad]

    def optimisers(self) -> dict[str, OptimiserSpec]:
        params = self.online_parameters()
        return {"q": OptimiserSpec(params, self.lr, self.grad_clip, self.optimiser_kind, self.optimiser_options)}

    def learn(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        out = self.compute_loss(batch, is_weights)
        self.optimise("q", out.loss)
        return out

    # ---- helpers ------------------------------------------------------------------------
    @staticmethod
    def greedy_actions(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """Each agent's best available action: q [.., N, A], avail bool → [.., N] long."""
        return q.detach().masked_fill(~avail, float("-inf")).argmax(-1)

    def greedy_target_values(
        self, q: torch.Tensor, target_q: torch.Tensor, avail: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Double-Q: the online network picks each agent's action, the target network values it
        (``double_q: false``: the target network does both).

        q, target_q [*, N, A], avail [*, N, A] → (greedy actions [*, N], their target Q [*, N]).
        """
        greedy = self.greedy_actions(q if self.double_q else target_q, avail)  # [*, N]
        return greedy, target_q.gather(-1, greedy[..., None]).squeeze(-1)

    def lambda_returns(self, ep: PackedBatch, next_values: torch.Tensor) -> torch.Tensor:
        """TD(λ) targets [R] (float32) from the target value of each transition's next observation [R]."""
        return ep.lambda_returns(next_values, self.gamma, self.td_lambda)

    # ---- the template -------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        """Loss, the sampler's signals and metrics for a batch of episodes [b, T+1, ...] (packed first)."""
        ep = PackedBatch.of(batch, self.info.n_actions)
        fwd = self.forward_values(ep)
        q_tot = fwd.q_tot.float()  # [R]
        with torch.no_grad():
            y = self.targets(ep, fwd)  # [R] float32
        td = q_tot - y  # [R]
        w_sampler, signals = self.weigh(
            ep, is_weights, td=td, q_tot=q_tot, q_star=fwd.q_star,
            agent_utils=fwd.agent_qs[ep.tr], taken=ep.taken, avail=ep.avail[ep.tr],
        )  # fmt: skip
        w_scheme = self.scheme_weights(ep, fwd, y, td.detach())  # [R] or None
        weights = w_sampler if w_scheme is None else w_sampler * w_scheme
        td_loss = ep.mean(weights * td.pow(2))
        loss, metrics = td_loss, {}
        extra = self.extra_losses(ep, fwd, y)
        for key, (coef, value) in extra.items():
            loss = loss + coef * value
            metrics[key] = value.detach()
        metrics["loss"] = loss.detach()
        metrics["td_error_abs"] = ep.mean(td.detach().abs())
        metrics["q_taken_mean"] = ep.mean(q_tot.detach())
        metrics["target_mean"] = ep.mean(y)
        if extra:
            metrics[self.td_loss_name] = td_loss.detach()
        if fwd.q_star is not None:
            metrics["q_star_mean"] = ep.mean(fwd.q_star.detach().float())
        if w_scheme is not None:
            metrics[self.scheme_weight_name] = ep.mean(w_scheme)
        return LossOutput(loss, signals, metrics)
