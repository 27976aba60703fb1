"""QMIX (Rashid et al. 2018): per-agent GRU utilities mixed monotonically into Q_tot.

Double-Q, TD(λ) targets from target networks, per-timestep loss weights from the sampler
(the loss template is ``macpo.algos.value_based``).
"""

from __future__ import annotations

import torch

from macpo.algos.base import EpisodeBatch, LoopSettings, masked_mean
from macpo.algos.value_based import ValueDecomposition, ValueForward
from macpo.envs.base import BatchedEnv
from macpo.nn.qmix_mixer import QMixer
from macpo.replay.samplers.base import Sampler

__all__ = ["QMIX", "masked_mean"]


class QMIX(ValueDecomposition):
    provides = frozenset({"td", "pi"})

    def __init__(
        self,
        train_env: BatchedEnv,
        sampler: Sampler,
        loop: LoopSettings,
        name: str = "qmix",
        lr: float = 1e-3,
        gamma: float = 0.99,
        td_lambda: float = 0.6,
        double_q: bool = True,
        agent_hidden_dim: int = 64,
        mixer_embed_dim: int = 32,
        hypernet_dim: int = 64,
        agent_q_clamp: list[float] | None = None,
        grad_clip: float = 10.0,
        epsilon_start: float = 1.0,
        epsilon_finish: float = 0.05,
        epsilon_anneal_time: int = 100_000,
    ) -> None:
        super().__init__(
            train_env, sampler, loop, name=name, lr=lr, gamma=gamma, td_lambda=td_lambda, double_q=double_q,
            agent_hidden_dim=agent_hidden_dim, agent_q_clamp=agent_q_clamp, grad_clip=grad_clip,
            epsilon_start=epsilon_start, epsilon_finish=epsilon_finish, epsilon_anneal_time=epsilon_anneal_time,
        )  # fmt: skip
        self.mixer = QMixer(self.info.n_agents, self.info.state_shape, mixer_embed_dim, hypernet_dim)
        self.add_target("agent")
        self.add_target("mixer")

    def forward_values(self, ep: EpisodeBatch) -> ValueForward:
        q, _ = self.agent(ep.inputs)  # [b, T+1, N, A]
        chosen = q[:, :-1].gather(-1, ep.taken[..., None]).squeeze(-1)  # [b, T, N]
        return ValueForward(agent_qs=q, q_tot=self.mixer(chosen, ep.state[:, :-1]))  # q_tot [b, T]

    def targets(self, ep: EpisodeBatch, fwd: ValueForward) -> torch.Tensor:
        target_q, _ = self.target_agent(ep.inputs)  # [b, T+1, N, A]
        _, target_max = self.greedy_target_values(fwd.agent_qs, target_q, ep.avail)  # [b, T+1, N]
        return self.lambda_returns(ep, self.target_mixer(target_max, ep.state))  # [b, T]
