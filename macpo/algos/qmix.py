"""QMIX (Rashid et al. 2018): per-agent GRU utilities mixed monotonically into Q_tot.

Double-Q, TD(λ) targets from target networks, per-timestep loss weights from the sampler.
"""

from __future__ import annotations

import copy

import torch

from macpo.algos.base import LoopSettings, LossOutput, MarlAlgorithm
from macpo.envs.base import BatchedEnv
from macpo.nn.agent import RNNAgent, agent_inputs
from macpo.nn.qmix_mixer import QMixer
from macpo.nn.targets import td_lambda_targets
from macpo.replay.samplers.base import Sampler
from macpo.replay.signals import Signals


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


class QMIX(MarlAlgorithm):
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
        super().__init__(train_env, sampler, loop, lr, epsilon_start, epsilon_finish, epsilon_anneal_time)
        self.name, self.gamma, self.td_lambda = name, gamma, td_lambda
        self.double_q, self.grad_clip = double_q, grad_clip
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.agent = RNNAgent(o + a + n, a, agent_hidden_dim, agent_q_clamp)
        self.mixer = QMixer(n, s, mixer_embed_dim, hypernet_dim)
        self.target_agent = copy.deepcopy(self.agent).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)

    def acting_agent(self) -> torch.nn.Module:
        return self.agent

    def online_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.agent.parameters(), *self.mixer.parameters()]

    def update_targets(self) -> None:
        self.target_agent.load_state_dict(self.agent.state_dict())
        self.target_mixer.load_state_dict(self.mixer.state_dict())

    def greedy_target_values(
        self, q: torch.Tensor, target_q: torch.Tensor, avail: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Double-Q: the online network picks each agent's action, the target network values it.

        q, target_q [b, T+1, N, A], avail [b, T+1, N, A] → (greedy actions [b, T+1, N], their target Q).
        """
        chooser = q.detach() if self.double_q else target_q
        greedy = chooser.masked_fill(~avail, float("-inf")).argmax(-1)  # [b, T+1, N]
        return greedy, target_q.gather(-1, greedy[..., None]).squeeze(-1)

    def compute_loss(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        actions, avail, state = batch["actions"], batch["avail_actions"], batch["state"]  # [b,T+1,N], [b,T+1,N,A]
        reward = batch["reward"][:, :-1]  # [b, T]
        terminated = batch["terminated"][:, :-1].float()  # [b, T]
        mask = batch["filled"][:, :-1].float()  # [b, T] real transitions

        inputs = agent_inputs(batch["obs"], actions, self.info.n_actions)  # [b, T+1, N, I]
        q, _ = self.agent(inputs)  # [b, T+1, N, A]
        chosen = q[:, :-1].gather(-1, actions[:, :-1, :, None]).squeeze(-1)  # [b, T, N]
        q_tot = self.mixer(chosen, state[:, :-1])  # [b, T]

        with torch.no_grad():
            target_q, _ = self.target_agent(inputs)  # [b, T+1, N, A]
            _, target_max = self.greedy_target_values(q, target_q, avail)  # [b, T+1, N]
            target_tot = self.target_mixer(target_max, state)  # [b, T+1]
            y = td_lambda_targets(reward, terminated, mask, target_tot, self.gamma, self.td_lambda)  # [b, T]

        td = q_tot - y  # [b, T]
        signals = Signals(mask=mask, td=td.detach(), q_tot=q_tot.detach())
        if "pi" in self.sampler.needs:
            signals.pi = self.sampler.taken_action_probs(q[:, :-1].detach(), actions[:, :-1], avail[:, :-1])
        weights = self.sampler.loss_weights(signals, is_weights)  # [b, T]
        loss = masked_mean(weights * td.pow(2), mask)
        metrics = {
            "loss": loss.detach(),
            "td_error_abs": masked_mean(td.detach().abs(), mask),
            "q_taken_mean": masked_mean(q_tot.detach(), mask),
            "target_mean": masked_mean(y, mask),
        }
        return LossOutput(loss, signals, metrics)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        norm = torch.nn.utils.clip_grad_norm_(self.online_parameters(), self.grad_clip)
        self._accumulate({"grad_norm": norm.reshape(1)})
