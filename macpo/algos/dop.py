"""DOP (Wang et al., ICLR 2021): off-policy multi-agent decomposed policy gradients.

A linearly decomposed critic Q_tot = Σ_i k_i(s) Q_i(s, a_i) + b(s) (``macpo.nn.dop_critic``)
learns from two buffers, as in the authors' public code:

- the run's replay buffer (the DataModule, any sampler that needs only δ): n-step tree-backup
  targets (``macpo.nn.tree_backup``), which stay unbiased for episodes of older policies;
- a small buffer of the most recent episodes (``on_buffer_size``, DOP's on-policy buffer):
  TD(λ) targets on ``on_batch_size`` episodes drawn uniformly from it.

One critic step regresses on both batches together; then the decentralised actors take one
policy-gradient step on the latest ``on_batch_size`` episodes with the decomposed gradient
Σ_i k_i(s) ∇log π_i(a_i) [Q_i(s, a_i) − Σ_a π_i(a) Q_i(s, a)]. Target critic and mixer are
copied every ``target_update_interval`` episodes (the run's schedule).
"""

from __future__ import annotations

import torch

from macpo.algos.actor_critic import ActorCritic
from macpo.algos.base import EpisodeBatch, LoopSettings, LossOutput, OptimiserSpec, masked_mean
from macpo.config.schema import DopConfig
from macpo.envs.base import BatchedEnv
from macpo.nn.agent import RNNAgent
from macpo.nn.dop_critic import AgentCritic, LinearMixer, critic_inputs, decomposed_advantages
from macpo.nn.policy_head import taken_log_probs
from macpo.nn.targets import td_lambda_targets
from macpo.nn.tree_backup import expected_sarsa_errors, tree_backup_targets
from macpo.replay.buffer import EpisodeBuffer
from macpo.replay.samplers.base import Sampler
from macpo.rollout import Collector


class RecentEpisodes:
    """DOP's on-policy buffer: the last ``capacity`` collected episodes (a small ring buffer)."""

    def __init__(self, capacity: int, buffer: EpisodeBuffer) -> None:
        self.capacity, self.buffer = capacity, buffer

    def __len__(self) -> int:
        return len(self.buffer)

    def insert(self, episodes: dict[str, torch.Tensor]) -> None:
        for start in range(0, episodes["filled"].shape[0], self.capacity):  # a batch larger than the buffer
            self.buffer.insert({k: v[start : start + self.capacity] for k, v in episodes.items()})

    def uniform(self, k: int) -> dict[str, torch.Tensor]:
        """``k`` episodes drawn uniformly without replacement."""
        idx = torch.randperm(len(self.buffer), device=self.buffer.device)[:k]
        return self.buffer[idx]

    def latest(self, k: int) -> dict[str, torch.Tensor]:
        """The ``k`` most recently inserted episodes."""
        k = min(k, len(self.buffer))
        idx = (self.buffer.pos - 1 - torch.arange(k, device=self.buffer.device)) % self.buffer.capacity
        return self.buffer[idx]


class RecordingCollector(Collector):
    """A Collector that also hands every batch it collects to ``sink`` (DOP's recent episodes)."""

    def __init__(self, env: BatchedEnv, sink) -> None:
        super().__init__(env)
        self.sink = sink

    def run(self, policy, seed: int | None = None):
        episodes, stats = super().run(policy, seed)
        self.sink(episodes)
        return episodes, stats


class DOP(ActorCritic):
    provides = frozenset({"td"})
    on_policy = False
    config_class = DopConfig
    preset = "dop"

    def __init__(self, train_env: BatchedEnv, sampler: Sampler, loop: LoopSettings,
                 cfg: DopConfig | None = None, **overrides) -> None:  # fmt: skip
        super().__init__(train_env, sampler, loop, cfg, **overrides)
        cfg = self.cfg
        self.critic_lr, self.tb_lambda = cfg.critic_lr, cfg.tb_lambda
        self.tree_backup_steps, self.on_batch_size = cfg.tree_backup_steps, cfg.on_batch_size
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.actor = RNNAgent(o + a + n, a, cfg.agent_hidden_dim)
        self.critic = AgentCritic(s + o + n, a, cfg.critic_hidden_dim)
        self.mixer = LinearMixer(n, s, cfg.mixer_embed_dim)
        self.add_target("critic")
        self.add_target("mixer")
        capacity = cfg.on_buffer_size
        self.recent = RecentEpisodes(capacity, EpisodeBuffer(capacity, self.info, train_env.device))
        self.collector = RecordingCollector(train_env, self.recent.insert)

    @classmethod
    def check_hparams(cls, cfg: DopConfig) -> None:
        super().check_hparams(cfg)
        if not 1 <= cfg.on_batch_size <= cfg.on_buffer_size:
            raise ValueError(
                f"algo.on_batch_size must lie in [1, algo.on_buffer_size={cfg.on_buffer_size}], got {cfg.on_batch_size}"
            )

    def acting_actor(self) -> torch.nn.Module:
        return self.actor

    def optimisers(self) -> dict[str, OptimiserSpec]:
        return {
            "critic": self.rmsprop([*self.critic.parameters(), *self.mixer.parameters()], self.critic_lr),
            "actor": self.rmsprop(list(self.actor.parameters()), self.lr),
        }

    # ---- critic ---------------------------------------------------------------------------
    def target_values(self, ep: EpisodeBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target-critic values of every timestep [b, T+1]: Q̄_tot at the taken actions (the
        expected value where no action was taken: the state after the last transition), E_π Q̄_tot,
        and the current joint policy's probability of the taken actions [b, T] (the trace)."""
        q = self.target_critic(critic_inputs(ep.state, ep.obs))  # [b, T+1, N, A]
        probs = self.behaviour_probs(self.actor(ep.inputs)[0], ep.avail)  # [b, T+1, N, A]
        expected = self.target_mixer((probs * q).sum(-1), ep.state)  # [b, T+1] (the mixer is linear)
        taken = self.target_mixer(q.gather(-1, ep.actions[..., None]).squeeze(-1), ep.state)  # [b, T+1]
        acted = torch.cat([ep.mask, torch.zeros_like(ep.mask[:, :1])], dim=1) > 0  # [b, T+1]
        trace = probs[:, :-1].gather(-1, ep.taken[..., None]).squeeze(-1).prod(-1)  # [b, T]
        return torch.where(acted, taken, expected), expected, trace

    def online_q_tot(self, ep: EpisodeBatch) -> torch.Tensor:
        q = self.critic(critic_inputs(ep.state[:, :-1], ep.obs[:, :-1]))  # [b, T, N, A]
        return self.mixer(q.gather(-1, ep.taken[..., None]).squeeze(-1), ep.state[:, :-1])  # [b, T]

    def critic_step(self, off: EpisodeBatch, on: EpisodeBatch, is_weights: torch.Tensor):
        with torch.no_grad():
            taken, expected, trace = self.target_values(off)
            td = expected_sarsa_errors(off.reward, off.terminated, off.mask, taken[:, :-1], expected, self.gamma)
            y_off = tree_backup_targets(td, taken[:, :-1], trace, off.mask, self.gamma, self.tb_lambda,
                                        self.tree_backup_steps)  # fmt: skip  # [b, T]
            taken_on, _, _ = self.target_values(on)
            y_on = td_lambda_targets(on.reward, on.terminated, on.mask, taken_on, self.gamma, self.td_lambda)
        q_off, q_on = self.online_q_tot(off), self.online_q_tot(on)  # [b, T], [k, T']
        err_off, err_on = q_off - y_off, q_on - y_on
        weights, signals = self.weigh(off.mask, is_weights, td=err_off, q_tot=q_off)  # the replayed batch's weights
        n_steps = (off.mask.sum() + on.mask.sum()).clamp_min(1.0)
        loss = ((weights * err_off.pow(2) * off.mask).sum() + (err_on.pow(2) * on.mask).sum()) / n_steps
        self.optimise("critic", loss)
        metrics = {
            "critic_loss": loss.detach(), "td_error_abs": masked_mean(err_off.detach().abs(), off.mask),
            "td_error_abs_recent": masked_mean(err_on.detach().abs(), on.mask),
            "q_taken_mean": masked_mean(q_off.detach(), off.mask), "target_mean": masked_mean(y_off, off.mask),
        }  # fmt: skip
        return signals, metrics

    # ---- actor ----------------------------------------------------------------------------
    def actor_step(self, ep: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask = ep.mask  # [b, T]
        probs = self.behaviour_probs(self.actor(ep.inputs)[0][:, :-1], ep.avail[:, :-1])  # [b, T, N, A]
        with torch.no_grad():
            q = self.critic(critic_inputs(ep.state[:, :-1], ep.obs[:, :-1]))  # [b, T, N, A]
            k = self.mixer.k(ep.state[:, :-1])  # [b, T, N]
            adv = decomposed_advantages(q, probs.detach(), ep.taken)  # [b, T, N]
        log_pi = taken_log_probs(probs, ep.taken, mask[..., None])  # [b, T, N]
        loss = -masked_mean(k * adv * log_pi, mask[..., None]) / self.info.n_agents
        self.optimise("actor", loss)
        return {"pg_loss": loss.detach(), "advantage_mean": masked_mean(adv, mask[..., None]) / self.info.n_agents,
                "pi_max": masked_mean(probs.detach().max(-1).values, mask[..., None]) / self.info.n_agents}  # fmt: skip

    def learn(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        n_actions = self.info.n_actions
        off = EpisodeBatch.of(batch, n_actions)
        on = EpisodeBatch.of(self.recent.uniform(self.on_batch_size), n_actions)
        signals, metrics = self.critic_step(off, on, is_weights)
        metrics.update(self.actor_step(EpisodeBatch.of(self.recent.latest(self.on_batch_size), n_actions)))
        metrics["loss"] = metrics["critic_loss"]
        return LossOutput(metrics["critic_loss"], signals, metrics)

    # ---- checkpoint: the recent episodes travel with the networks ---------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["dop_recent"] = self.recent.buffer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("dop_recent")
        if state is not None:
            self.recent.buffer.load_state_dict(state)  # also reads the layout before bit packing
