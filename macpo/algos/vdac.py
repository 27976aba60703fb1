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
from macpo.algos.base import EpisodeBatch, LoopSettings, LossOutput, OptimiserSpec, masked_mean
from macpo.config.schema import VdacConfig
from macpo.envs.base import BatchedEnv
from macpo.nn.policy_head import categorical_entropy, taken_log_probs
from macpo.nn.qmix_mixer import QMixer
from macpo.nn.vdac import ActorCriticAgent, vdac_advantages
from macpo.replay.samplers.base import Sampler


class VDAC(ActorCritic):
    provides = frozenset({"td"})
    on_policy = True
    config_class = VdacConfig
    preset = "vdac"

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings,
                 cfg: VdacConfig | None = None, **overrides) -> None:  # fmt: skip
        super().__init__(train_env, sampler, loop, cfg, **overrides)
        cfg = self.cfg
        self.vf_coef, self.ent_coef = cfg.vf_coef, cfg.ent_coef
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.agent = ActorCriticAgent(o + a + n, a, cfg.agent_hidden_dim)
        self.mixer = QMixer(n, s, cfg.mixer_embed_dim, cfg.hypernet_dim)

    def acting_actor(self) -> torch.nn.Module:
        return self.agent

    def optimisers(self) -> dict[str, OptimiserSpec]:
        return {"actor_critic": self.rmsprop([*self.agent.parameters(), *self.mixer.parameters()], self.lr)}

    def learn(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        ep = EpisodeBatch.of(batch, self.info.n_actions)
        mask = ep.mask  # [b, T]
        logits, values = self.agent.heads(ep.inputs)  # [b, T+1, N, A], [b, T+1, N]
        v_tot = self.mixer(values, ep.state)  # [b, T+1]
        targets, adv = vdac_advantages(ep.reward, ep.terminated, mask, v_tot, self.gamma, self.td_lambda)  # [b, T]
        td = v_tot[:, :-1] - targets  # [b, T]
        weights, signals = self.weigh(mask, is_weights, td=td, q_tot=v_tot[:, :-1])  # uniform: ones

        probs = self.behaviour_probs(logits[:, :-1], ep.avail[:, :-1])  # [b, T, N, A]
        log_pi = taken_log_probs(probs, ep.taken, mask[..., None])  # [b, T, N]
        pg_loss = -masked_mean(adv[..., None] * log_pi, mask[..., None]) / self.info.n_agents
        vf_loss = masked_mean(weights * td.pow(2), mask)
        entropy = masked_mean(categorical_entropy(probs), mask[..., None]) / self.info.n_agents
        loss = pg_loss + self.vf_coef * vf_loss - self.ent_coef * entropy
        self.optimise("actor_critic", loss)
        metrics = {
            "loss": loss.detach(), "pg_loss": pg_loss.detach(), "critic_loss": vf_loss.detach(),
            "td_error_abs": masked_mean(td.detach().abs(), mask), "advantage_mean": masked_mean(adv, mask),
            "v_tot_mean": masked_mean(v_tot[:, :-1].detach(), mask), "target_mean": masked_mean(targets, mask),
            "entropy": entropy.detach(),
        }  # fmt: skip
        return LossOutput(loss.detach(), signals, metrics)
