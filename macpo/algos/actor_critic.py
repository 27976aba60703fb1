"""ActorCritic: what DOP, FOP and VDAC share on top of ``MarlAlgorithm``.

Decentralised stochastic actors (one recurrent network shared by the agents, input obs ⊕ last
action ⊕ agent id, output policy logits) explore by sampling their own policy with the
"ε-floor" of pymarl's multinomial action selector, which all three methods' public SMAC configs
use: during training each agent acts from (1 − ε)·softmax + ε·uniform over its available
actions, ε annealed linearly in env steps; at test time it takes its most probable action.
The losses use the same behaviour distribution (pymarl's learners read the controller's output
with the floor). Optimisers are pymarl's RMSprop (α = 0.99, ε = 1e-5).
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from macpo.algos.base import LoopSettings, MarlAlgorithm, OptimiserSpec
from macpo.algos.policy import CategoricalPolicy, available_softmax
from macpo.config.schema import ActorCriticConfig
from macpo.envs.base import BatchedEnv
from macpo.nn.soft_targets import linear_schedule
from macpo.replay.samplers.base import Sampler


class ActorCritic(MarlAlgorithm, abstract=True):
    """Stochastic shared-parameter actors with an annealed ε-floor; subclasses add critics and losses."""

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings,
                 cfg: ActorCriticConfig | None = None, **overrides) -> None:  # fmt: skip
        super().__init__(train_env, sampler, loop, cfg, **overrides)
        cfg = self.cfg
        self.lr, self.gamma, self.td_lambda, self.grad_clip = cfg.lr, cfg.gamma, cfg.td_lambda, cfg.grad_clip
        self.eps_start, self.eps_finish, self.eps_time = cfg.epsilon_start, cfg.epsilon_finish, cfg.epsilon_anneal_time
        self.optim_options = {"alpha": cfg.optim_alpha, "eps": cfg.optim_eps}

    @abstractmethod
    def acting_actor(self) -> torch.nn.Module:
        """The network the agents act with: ``forward(inputs, hidden)`` → (logits [B, T, N, A], hidden)."""

    # ---- exploration --------------------------------------------------------------------
    def epsilon(self) -> float:
        """The exploration floor ε at the current env step."""
        return linear_schedule(self.env_steps, self.eps_start, self.eps_finish, self.eps_time)

    def exploration_metrics(self) -> dict[str, float]:
        return {"epsilon": self.epsilon()}

    def explore_policy(self) -> CategoricalPolicy:
        return CategoricalPolicy(self.acting_actor(), self.info.n_agents, self.info.n_actions, self.epsilon)

    def greedy_policy(self) -> CategoricalPolicy:
        return CategoricalPolicy(self.acting_actor(), self.info.n_agents, self.info.n_actions, greedy=True)

    def behaviour_probs(self, logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """The acting distribution (current ε-floor) [..., A]; padded rows (no available action) uniform."""
        probs = available_softmax(logits, avail, self.epsilon())
        uniform = torch.full_like(probs, 1.0 / probs.shape[-1])
        return torch.where(avail.any(-1, keepdim=True), probs, uniform)

    # ---- optimisers ---------------------------------------------------------------------
    def rmsprop(self, params: list[torch.nn.Parameter], lr: float) -> OptimiserSpec:
        """pymarl's optimiser: RMSprop with the configured α and ε, gradient norm clipped."""
        return OptimiserSpec(params, lr, self.grad_clip, kind="rmsprop", options=dict(self.optim_options))
