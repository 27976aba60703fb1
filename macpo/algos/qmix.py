"""QMIX (Rashid et al. 2018): per-agent GRU utilities mixed monotonically into Q_tot.

Double-Q, TD(λ) targets from target networks, per-timestep loss weights from the sampler.
"""

from __future__ import annotations

import copy

import torch

from macpo.algos.base import LoopSettings, LossOutput, MarlAlgorithm
from macpo.envs.base import BatchedEnv
from macpo.nn.agent import RNNAgent
from macpo.nn.packing import EpisodePacking
from macpo.nn.qmix_mixer import QMixer
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

        q, target_q [*, N, A], avail [*, N, A] → (greedy actions [*, N], their target Q [*, N]).
        """
        chooser = q.detach() if self.double_q else target_q
        greedy = chooser.masked_fill(~avail, float("-inf")).argmax(-1)  # [b, T+1, N]
        return greedy, target_q.gather(-1, greedy[..., None]).squeeze(-1)

    def compute_loss(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        """Loss on real timesteps only: networks, targets and loss run on packed rows
        (``macpo.nn.packing``); the sampler sees its signals padded back to [b, T]."""
        pk = EpisodePacking(batch["filled"])
        inputs = pk.agent_inputs(batch["obs"], batch["actions"], self.info.n_actions)  # [R_obs, N, I]
        actions = pk.pack_obs(batch["actions"]).long()  # [R_obs, N]
        avail = pk.pack_obs(batch["avail_actions"]).bool()  # [R_obs, N, A]
        state = pk.pack_obs(batch["state"]).float()  # [R_obs, S]
        tr, nxt = pk.trans_in_obs, pk.next_in_obs  # [R] observation rows of each transition and its successor

        q = self.agent.forward_packed(inputs, pk.obs_steps)  # [R_obs, N, A]
        chosen = q.gather(-1, actions[..., None]).squeeze(-1)[tr]  # [R, N]
        q_tot = self.mixer(chosen, state[tr]).float()  # [R]

        with torch.no_grad():
            target_q = self.target_agent.forward_packed(inputs, pk.obs_steps)  # [R_obs, N, A]
            _, target_max = self.greedy_target_values(q[nxt], target_q[nxt], avail[nxt])  # [R, N]
            target_next = self.target_mixer(target_max, state[nxt])  # [R] value of each next observation
            y = pk.td_lambda_targets(pk.pack_trans(batch["reward"]), pk.pack_trans(batch["terminated"]),
                                     target_next, self.gamma, self.td_lambda)  # [R] float32  # fmt: skip

        td = q_tot - y  # [R]
        signals = Signals(mask=pk.pad_mask(), td=pk.unpack(td.detach()), q_tot=pk.unpack(q_tot.detach()))
        if "pi" in self.sampler.needs:
            pi = self.sampler.taken_action_probs(q[tr].detach(), actions[tr], avail[tr])  # [R, N]
            signals.pi = pk.unpack(pi)  # [b, T, N]
        weights = self.sampler.loss_weights(signals, is_weights).flatten()[pk.trans_pad_index]  # [R]
        loss = pk.masked_rows(weights * td.pow(2))
        metrics = {
            "loss": loss.detach(),
            "td_error_abs": pk.masked_rows(td.detach().abs()),
            "q_taken_mean": pk.masked_rows(q_tot.detach()),
            "target_mean": pk.masked_rows(y),
        }
        return LossOutput(loss, signals, metrics)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        norm = torch.nn.utils.clip_grad_norm_(self.online_parameters(), self.grad_clip)
        self._accumulate({"grad_norm": norm.reshape(1)})
