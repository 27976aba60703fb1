"""VDAC-mix (Su et al., AAAI 2021): value-decomposition actor-critic, on-policy.

Each agent's network has a policy head and a local value head V_i(τ_i); QMIX's monotonic mixer
gives V_tot(s) from the V_i and the state. One loss on the episodes just collected:
policy gradient with the joint advantage A_t = G^λ_t − V_tot(s_t) shared by every agent, plus
``vf_coef`` × the squared error of V_tot against the λ-returns (``macpo.nn.vdac``), minus an
optional entropy bonus. One optimiser trains the agents and the mixer. No replay buffer.
"""

from __future__ import annotations

import torch

from macpo.algos.actor_critic import ActorCritic
from macpo.algos.base import LoopSettings, LossOutput, OptimiserSpec, PackedBatch
from macpo.envs.base import BatchedEnv
from macpo.nn.policy_head import categorical_entropy, taken_log_probs
from macpo.nn.qmix_mixer import QMixer
from macpo.nn.vdac import ActorCriticAgent, vdac_advantages
from macpo.replay.samplers.base import Sampler


class VDAC(ActorCritic):
    provides = frozenset({"td"})
    on_policy = True

    def __init__(
        self,
        train_env: BatchedEnv,
        sampler: Sampler,
        loop: LoopSettings,
        name: str = "vdac",
        lr: float = 5e-4,
        gamma: float = 0.99,
        td_lambda: float = 0.8,
        vf_coef: float = 0.1,
        ent_coef: float = 0.0,
        agent_hidden_dim: int = 64,
        mixer_embed_dim: int = 32,
        hypernet_dim: int = 64,
        grad_clip: float = 10.0,
        epsilon_start: float = 0.5,
        epsilon_finish: float = 0.01,
        epsilon_anneal_time: int = 100_000,
        optim_alpha: float = 0.99,
        optim_eps: float = 1e-5,
    ) -> None:
        super().__init__(train_env, sampler, loop, name, gamma, grad_clip, epsilon_start, epsilon_finish,
                         epsilon_anneal_time, optim_alpha, optim_eps)  # fmt: skip
        self.lr, self.td_lambda, self.vf_coef, self.ent_coef = lr, td_lambda, vf_coef, ent_coef
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.agent = ActorCriticAgent(o + a + n, a, agent_hidden_dim)
        self.mixer = QMixer(n, s, mixer_embed_dim, hypernet_dim)

    def acting_actor(self) -> torch.nn.Module:
        return self.agent

    def optimisers(self) -> dict[str, OptimiserSpec]:
        return {"actor_critic": self.rmsprop([*self.agent.parameters(), *self.mixer.parameters()], self.lr)}

    def learn(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        ep = PackedBatch.of(batch, self.info.n_actions)
        n, tr = self.info.n_agents, ep.tr
        logits, values = self.agent.heads(ep.inputs, ep.steps)  # [R_obs, N, A], [R_obs, N]
        v_tot = self.mixer(values, ep.state)  # [R_obs] (the state in its storage dtype)
        targets, adv = vdac_advantages(ep.packing, ep.reward, ep.terminated, v_tot[tr], v_tot[ep.nxt],
                                       self.gamma, self.td_lambda)  # fmt: skip  # [R]
        td = v_tot[tr] - targets  # [R]
        weights, signals = self.weigh(ep, is_weights, td=td, q_tot=v_tot[tr])  # uniform: ones

        probs = self.behaviour_probs(logits[tr], ep.avail[tr])  # [R, N, A]
        log_pi = taken_log_probs(probs, ep.taken)  # [R, N]
        pg_loss = -ep.mean((adv[:, None] * log_pi).sum(-1)) / n
        vf_loss = ep.mean(weights * td.pow(2))
        entropy = ep.mean(categorical_entropy(probs).sum(-1)) / n
        loss = pg_loss + self.vf_coef * vf_loss - self.ent_coef * entropy
        self.optimise("actor_critic", loss)
        metrics = {
            "loss": loss.detach(), "pg_loss": pg_loss.detach(), "critic_loss": vf_loss.detach(),
            "td_error_abs": ep.mean(td.detach().abs()), "advantage_mean": ep.mean(adv),
            "v_tot_mean": ep.mean(v_tot[tr].detach()), "target_mean": ep.mean(targets),
            "entropy": entropy.detach(),
        }  # fmt: skip
        return LossOutput(loss.detach(), signals, metrics)
