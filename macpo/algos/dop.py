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
from macpo.algos.base import LoopSettings, LossOutput, OptimiserSpec, PackedBatch
from macpo.envs.base import BatchedEnv
from macpo.nn.agent import RNNAgent
from macpo.nn.dop_critic import AgentCritic, LinearMixer, critic_inputs, decomposed_advantages
from macpo.nn.policy_head import taken_log_probs
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

    def __init__(
        self,
        train_env: BatchedEnv,
        sampler: Sampler,
        loop: LoopSettings,
        name: str = "dop",
        lr: float = 5e-4,
        critic_lr: float = 1e-4,
        gamma: float = 0.99,
        td_lambda: float = 0.8,
        tb_lambda: float = 0.93,
        tree_backup_steps: int = 5,
        on_buffer_size: int = 32,
        on_batch_size: int = 16,
        agent_hidden_dim: int = 64,
        critic_hidden_dim: int = 256,
        mixer_embed_dim: int = 32,
        grad_clip: float = 10.0,
        epsilon_start: float = 0.5,
        epsilon_finish: float = 0.05,
        epsilon_anneal_time: int = 500_000,
        optim_alpha: float = 0.99,
        optim_eps: float = 1e-5,
    ) -> None:
        super().__init__(train_env, sampler, loop, name, gamma, grad_clip, epsilon_start, epsilon_finish,
                         epsilon_anneal_time, optim_alpha, optim_eps)  # fmt: skip
        if tree_backup_steps < 1:
            raise ValueError(f"algo.tree_backup_steps must be >= 1, got {tree_backup_steps}")
        if not 1 <= on_batch_size <= on_buffer_size:
            raise ValueError(
                f"algo.on_batch_size must lie in [1, algo.on_buffer_size={on_buffer_size}], got {on_batch_size}"
            )
        self.lr, self.critic_lr, self.td_lambda, self.tb_lambda = lr, critic_lr, td_lambda, tb_lambda
        self.tree_backup_steps, self.on_batch_size = tree_backup_steps, on_batch_size
        n, a, o, s = self.info.n_agents, self.info.n_actions, self.info.obs_shape, self.info.state_shape
        self.actor = RNNAgent(o + a + n, a, agent_hidden_dim)
        self.critic = AgentCritic(s + o + n, a, critic_hidden_dim)
        self.mixer = LinearMixer(n, s, mixer_embed_dim)
        self.add_target("critic")
        self.add_target("mixer")
        self.recent = RecentEpisodes(on_buffer_size, EpisodeBuffer(on_buffer_size, self.info, train_env.device))
        self.collector = RecordingCollector(train_env, self.recent.insert)

    def acting_actor(self) -> torch.nn.Module:
        return self.actor

    def optimisers(self) -> dict[str, OptimiserSpec]:
        return {
            "critic": self.rmsprop([*self.critic.parameters(), *self.mixer.parameters()], self.critic_lr),
            "actor": self.rmsprop(list(self.actor.parameters()), self.lr),
        }

    # ---- critic ---------------------------------------------------------------------------
    def critic_rows(self, critic: AgentCritic, ep: PackedBatch, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Agent critics Q_i(s, ·) [rows, N, A] on observation rows ``rows`` (all of them when None);
        the critic reads the state, the agent's observation (the first O input features) and its id."""
        obs, state = ep.inputs[..., : self.info.obs_shape], ep.state  # [R_obs, N, O], [R_obs, S]
        if rows is not None:
            obs, state = obs[rows], state[rows]
        dtype = critic.fc1.weight.dtype
        return critic(critic_inputs(state.to(dtype), obs.to(dtype)))  # [rows, N, A]

    def target_values(self, ep: PackedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target-critic values of every observation row [R_obs]: Q̄_tot at the taken actions (the
        expected value where no action was taken: the state after an episode's last transition),
        E_π Q̄_tot, and the current joint policy's probability of the taken actions [R] (the trace)."""
        q = self.critic_rows(self.target_critic, ep)  # [R_obs, N, A]
        probs = self.behaviour_probs(self.actor.forward_packed(ep.inputs, ep.steps), ep.avail)  # [R_obs, N, A]
        state = ep.state.to(q.dtype)
        expected = self.target_mixer((probs * q).sum(-1), state)  # [R_obs] (the mixer is linear)
        taken = self.target_mixer(q[ep.tr].gather(-1, ep.taken[..., None]).squeeze(-1), state[ep.tr])  # [R]
        trace = probs[ep.tr].gather(-1, ep.taken[..., None]).squeeze(-1).prod(-1)  # [R]
        return expected.index_put((ep.tr,), taken), expected, trace

    def online_q_tot(self, ep: PackedBatch) -> torch.Tensor:
        q = self.critic_rows(self.critic, ep, ep.tr)  # [R, N, A]
        return self.mixer(q.gather(-1, ep.taken[..., None]).squeeze(-1), ep.state_tr.to(q.dtype))  # [R]

    def critic_step(self, off: PackedBatch, on: PackedBatch, is_weights: torch.Tensor):
        with torch.no_grad():
            value, expected, trace = self.target_values(off)  # [R_obs], [R_obs], [R]
            q_taken = value[off.tr]  # [R] Q̄ at the replayed actions
            td = expected_sarsa_errors(off.reward, off.terminated, q_taken, expected[off.nxt], self.gamma)  # [R]
            y_off = tree_backup_targets(off.packing, td, q_taken, trace, self.gamma, self.tb_lambda,
                                        self.tree_backup_steps)  # fmt: skip  # [R]
            value_on, _, _ = self.target_values(on)
            y_on = on.lambda_returns(value_on[on.nxt], self.gamma, self.td_lambda)  # [R']
        q_off, q_on = self.online_q_tot(off), self.online_q_tot(on)  # [R], [R']
        err_off, err_on = q_off - y_off, q_on - y_on
        weights, signals = self.weigh(off, is_weights, td=err_off, q_tot=q_off)  # the replayed batch's weights [R]
        n_steps = max(off.packing.n_trans + on.packing.n_trans, 1)
        loss = ((weights * err_off.pow(2)).sum() + err_on.pow(2).sum()) / n_steps
        self.optimise("critic", loss)
        metrics = {
            "critic_loss": loss.detach(), "td_error_abs": off.mean(err_off.detach().abs()),
            "td_error_abs_recent": on.mean(err_on.detach().abs()),
            "q_taken_mean": off.mean(q_off.detach()), "target_mean": off.mean(y_off),
        }  # fmt: skip
        return signals, metrics

    # ---- actor ----------------------------------------------------------------------------
    def actor_step(self, ep: PackedBatch) -> dict[str, torch.Tensor]:
        n = self.info.n_agents
        logits = self.actor.forward_packed(ep.inputs, ep.steps)[ep.tr]  # [R, N, A]
        probs = self.behaviour_probs(logits, ep.avail[ep.tr])  # [R, N, A]
        with torch.no_grad():
            q = self.critic_rows(self.critic, ep, ep.tr)  # [R, N, A]
            k = self.mixer.k(ep.state_tr.to(q.dtype))  # [R, N]
            adv = decomposed_advantages(q, probs.detach(), ep.taken)  # [R, N]
        log_pi = taken_log_probs(probs, ep.taken)  # [R, N]
        loss = -ep.mean((k * adv * log_pi).sum(-1)) / n
        self.optimise("actor", loss)
        return {"pg_loss": loss.detach(), "advantage_mean": ep.mean(adv.sum(-1)) / n,
                "pi_max": ep.mean(probs.detach().max(-1).values.sum(-1)) / n}  # fmt: skip

    def learn(self, batch: dict[str, torch.Tensor], is_weights: torch.Tensor) -> LossOutput:
        n_actions = self.info.n_actions
        off = PackedBatch.of(batch, n_actions)
        on = PackedBatch.of(self.recent.uniform(self.on_batch_size), n_actions)
        signals, metrics = self.critic_step(off, on, is_weights)
        metrics.update(self.actor_step(PackedBatch.of(self.recent.latest(self.on_batch_size), n_actions)))
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
