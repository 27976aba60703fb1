"""FOP (Zhang et al., ICML 2021): factorised optimal joint policy for maximum-entropy MARL.

Decentralised stochastic actors and twin soft critics (each: per-agent recurrent Q_i mixed by
FOP's IGO mixer, ``macpo.nn.fop_mixer``), all trained from replay. Per update, as the public
code orders it:

1. actors: minimise Σ_a π_i(a) [α log π_i(a) − min(Q¹_i, Q²_i)(τ, a)] (discrete soft policy
   improvement towards the per-agent Boltzmann policies the factorisation makes optimal);
2. critics: regress each Q_tot onto the entropy-regularised λ-return built from the smaller of
   the two target critics at actions sampled from the current policy
   (``macpo.nn.soft_targets``), plus the mixer's attention regulariser.

The actors explore by sampling their own softmax policies (no ε-floor by default, as the
public controller's default path). The temperature α decays linearly from ``alpha_start`` to ``alpha_finish`` over
``alpha_anneal_time`` env steps. Target critics and mixers are copied every
``target_update_interval`` episodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from macpo.algos.actor_critic import ActorCritic
from macpo.algos.base import LoopSettings, LossOutput, OptimiserSpec, PackedBatch
from macpo.envs.base import BatchedEnv
from macpo.nn.agent import RNNAgent
from macpo.nn.fop_mixer import FOPMixer
from macpo.nn.policy_head import categorical_entropy
from macpo.nn.soft_targets import entropy_regularised_targets, linear_schedule, soft_values
from macpo.replay.samplers.base import Sampler


class FOP(ActorCritic):
    provides = frozenset({"td"})
    on_policy = False

    def __init__(
        self,
        train_env: BatchedEnv,
        sampler: Sampler,
        loop: LoopSettings,
        name: str = "fop",
        lr: float = 5e-4,
        critic_lr: float = 5e-4,
        gamma: float = 0.99,
        td_lambda: float = 0.8,
        alpha_start: float = 0.5,
        alpha_finish: float = 0.05,
        alpha_anneal_time: int = 90_000,
        agent_hidden_dim: int = 64,
        mixer_embed_dim: int = 32,
        hypernet_dim: int = 64,
        n_heads: int = 4,
        attend_reg_coef: float = 1e-3,
        grad_clip: float = 10.0,
        epsilon_start: float = 0.0,
        epsilon_finish: float = 0.0,
        epsilon_anneal_time: int = 50_000,
        optim_alpha: float = 0.99,
        optim_eps: float = 1e-5,
    ) -> None:
        super().__init__(train_env, sampler, loop, name, gamma, grad_clip, epsilon_start, epsilon_finish,
                         epsilon_anneal_time, optim_alpha, optim_eps)  # fmt: skip
        if not (alpha_start > 0 and alpha_finish > 0):
            raise ValueError(f"algo.alpha_start and algo.alpha_finish must be > 0, got {alpha_start}, {alpha_finish}")
        self.lr, self.critic_lr, self.td_lambda = lr, critic_lr, td_lambda
        self.alpha_start, self.alpha_finish, self.alpha_time = alpha_start, alpha_finish, alpha_anneal_time
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.actor = RNNAgent(o + a + n, a, agent_hidden_dim)
        for i in (1, 2):
            setattr(self, f"critic{i}", RNNAgent(o + a + n, a, agent_hidden_dim))
            setattr(self, f"mixer{i}", FOPMixer(n, a, s, mixer_embed_dim, hypernet_dim, n_heads, attend_reg_coef))
            self.add_target(f"critic{i}")
            self.add_target(f"mixer{i}")

    def acting_actor(self) -> torch.nn.Module:
        return self.actor

    def alpha(self) -> float:
        """The entropy temperature at the current env step."""
        return linear_schedule(self.env_steps, self.alpha_start, self.alpha_finish, self.alpha_time)

    def exploration_metrics(self) -> dict[str, float]:
        return {"epsilon": self.epsilon(), "alpha": self.alpha()}

    def optimisers(self) -> dict[str, OptimiserSpec]:
        return {
            "actor": self.rmsprop(list(self.actor.parameters()), self.lr),
            "critic1": self.rmsprop([*self.critic1.parameters(), *self.mixer1.parameters()], self.critic_lr),
            "critic2": self.rmsprop([*self.critic2.parameters(), *self.mixer2.parameters()], self.critic_lr),
        }

    def actor_step(self, ep: PackedBatch, alpha: float) -> dict[str, torch.Tensor]:
        n = self.info.n_agents
        logits = self.actor.forward_packed(ep.inputs, ep.steps)[ep.tr]  # [R, N, A]
        probs = self.behaviour_probs(logits, ep.avail[ep.tr])  # [R, N, A]
        with torch.no_grad():
            q = torch.min(self.critic1.forward_packed(ep.inputs, ep.steps),
                          self.critic2.forward_packed(ep.inputs, ep.steps))[ep.tr]  # fmt: skip  # [R, N, A]
        log_pi = torch.log(probs.clamp_min(1e-20))
        loss = ep.mean((probs * (alpha * log_pi - q)).sum(-1).sum(-1)) / n
        self.optimise("actor", loss)
        return {"policy_loss": loss.detach(), "entropy": ep.mean(categorical_entropy(probs.detach()).sum(-1)) / n}

    def sample_next_actions(self, probs: torch.Tensor) -> torch.Tensor:
        """a' ∼ π for each row: probs [M, N, A] → actions [M, N] long."""
        m, n, a = probs.shape
        return torch.multinomial(probs.reshape(-1, a), 1).view(m, n)

    def critic_step(self, ep: PackedBatch, is_weights: torch.Tensor, alpha: float):
        nxt, tr = ep.nxt, ep.tr  # [R] observation rows of each transition's next observation, of itself
        with torch.no_grad():
            probs = self.behaviour_probs(self.actor.forward_packed(ep.inputs, ep.steps), ep.avail)[nxt]  # [R, N, A]
            next_actions = self.sample_next_actions(probs)  # a' ∼ π at every next observation, [R, N]
            next_log_pi = torch.log(probs.gather(-1, next_actions[..., None]).squeeze(-1).clamp_min(1e-20))  # [R, N]
            onehot = F.one_hot(next_actions, self.info.n_actions).to(probs.dtype)  # [R, N, A]
            next_q_tot = []
            for i in (1, 2):
                tq = getattr(self, f"target_critic{i}").forward_packed(ep.inputs, ep.steps)[nxt]  # [R, N, A]
                chosen = tq.gather(-1, next_actions[..., None]).squeeze(-1)  # [R, N]
                state = ep.state[nxt].to(tq.dtype)
                v = soft_values(tq, ep.avail[nxt], alpha)  # [R, N]
                next_q_tot.append(getattr(self, f"target_mixer{i}")(chosen, v, state, onehot)[0])  # [R]
            y = entropy_regularised_targets(ep.packing, ep.reward, ep.terminated, torch.min(*next_q_tot), next_log_pi,
                                            alpha, self.gamma, self.td_lambda)  # fmt: skip  # [R]

        taken_onehot = F.one_hot(ep.taken, self.info.n_actions).to(y.dtype)  # [R, N, A]
        q_tots, regs = [], []
        for i in (1, 2):
            q = getattr(self, f"critic{i}").forward_packed(ep.inputs, ep.steps)[tr]  # [R, N, A]
            v = soft_values(q, ep.avail[tr], alpha)  # [R, N]
            chosen = q.gather(-1, ep.taken[..., None]).squeeze(-1)  # [R, N]
            q_tot, reg = getattr(self, f"mixer{i}")(chosen, v, ep.state_tr.to(q.dtype), taken_onehot)  # [R], scalar
            q_tots.append(q_tot)
            regs.append(reg)
        td = q_tots[0] - y  # [R]
        weights, signals = self.weigh(ep, is_weights, td=td, q_tot=q_tots[0])
        losses = [ep.mean(weights * (q_tot - y).pow(2)) + reg for q_tot, reg in zip(q_tots, regs)]
        for i, loss in zip((1, 2), losses):
            self.optimise(f"critic{i}", loss)
        metrics = {
            "critic_loss": losses[0].detach(), "td_error_abs": ep.mean(td.detach().abs()),
            "q_taken_mean": ep.mean(q_tots[0].detach()), "target_mean": ep.mean(y),
        }  # fmt: skip
        return signals, metrics

    def learn(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        ep = PackedBatch.of(batch, self.info.n_actions)
        alpha = self.alpha()
        metrics = self.actor_step(ep, alpha)
        signals, critic_metrics = self.critic_step(ep, is_weights, alpha)
        metrics.update(critic_metrics)
        metrics["loss"] = metrics["critic_loss"]
        return LossOutput(metrics["critic_loss"], signals, metrics)
