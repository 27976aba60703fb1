"""DOP, FOP and VDAC on the packed batch equal their padded updates (float64, ragged episodes).

The oracles below are the three learners' updates as they were written over the padded [b, T+1]
batch before every learner read the packed one: every network on every padded timestep, losses
masked, the padded λ-return and tree-backup recursions. They run with ``nn.kernels=torch``
(``nn.GRU``, autograd) while the learners run their kernels, so the packing, the row-wise returns
and the kernels are all checked at once. The batch mixes lengths (1-step episodes too), terminated
and truncated endings, and holds random values in its padding: anything read from it would show.

One number changed on purpose (``test_fop_regulariser_reads_real_transitions_only``): FOP's attention
regulariser averaged the squared logits over every padded [b, T] row, as the public code does over
its zero-padded batches; it now averages over the real transitions, so it no longer depends on how
much padding a batch has or on what lies in it. The oracle computes it that way.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from macpo.algos.base import LoopSettings
from macpo.algos.dop import DOP
from macpo.algos.fop import FOP
from macpo.algos.vdac import VDAC
from macpo.envs.base import EnvInfo, FixedInfoEnv
from macpo.nn import kernels
from macpo.nn.dop_critic import critic_inputs, decomposed_advantages
from macpo.nn.packing import EpisodePacking
from macpo.nn.policy_head import categorical_entropy
from macpo.nn.soft_targets import soft_values
from macpo.replay.samplers.per import PerSampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.replay.signals import Signals
from tests.helpers import reference_agent_inputs, reference_td_lambda_targets

INFO = EnvInfo(n_agents=3, n_actions=5, obs_shape=7, state_shape=9, episode_limit=9)
LENGTHS = [9, 1, 4, 1, 9, 3, 6, 2]  # transitions per episode; the final observation follows each
TERMINATED = [False, True, True, False, False, True, False, True]  # the rest were truncated


def ragged_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Episodes of LENGTHS padded to T+1 = 10 steps (float64 observations and states), with random values
    in the padding too."""
    g = torch.Generator().manual_seed(seed)
    b, t1, n, a = len(LENGTHS), INFO.episode_limit + 1, INFO.n_agents, INFO.n_actions
    avail = torch.rand(b, t1, n, a, generator=g) < 0.7
    avail[..., 0] = True
    filled = torch.zeros(b, t1, dtype=torch.bool)
    terminated = torch.zeros(b, t1, dtype=torch.bool)
    for i, (length, term) in enumerate(zip(LENGTHS, TERMINATED)):
        filled[i, :length] = True
        terminated[i, length - 1] = term
    return {
        "obs": torch.rand(b, t1, n, INFO.obs_shape, generator=g, dtype=torch.float64),
        "state": torch.rand(b, t1, INFO.state_shape, generator=g, dtype=torch.float64),
        "avail_actions": avail,
        "actions": torch.multinomial(avail.double().view(-1, a), 1, generator=g).view(b, t1, n),
        "reward": torch.randn(b, t1, generator=g),  # float32, as stored (the learners read it so)
        "terminated": terminated,
        "filled": filled,
    }


# ---- the padded oracle ---------------------------------------------------------------------------
class Padded:
    """A batch as the padded learners read it: [b, T+1, ...] timesteps, [b, T] transitions."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.obs, self.state = batch["obs"].double(), batch["state"].double()  # [b, T+1, N, O], [b, T+1, S]
        self.avail = batch["avail_actions"].bool()  # [b, T+1, N, A]
        self.actions = batch["actions"].long()  # [b, T+1, N]
        self.taken = self.actions[:, :-1]  # [b, T, N]
        self.reward = batch["reward"][:, :-1].double()  # [b, T]
        self.terminated = batch["terminated"][:, :-1].double()  # [b, T]
        self.mask = batch["filled"][:, :-1].double()  # [b, T]
        self.inputs = reference_agent_inputs(self.obs, self.actions, INFO.n_actions)  # [b, T+1, N, I]


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def taken_log_probs(probs, actions, mask):
    p = probs.gather(-1, actions[..., None]).squeeze(-1)
    return torch.log(torch.where(mask.expand_as(p) > 0, p, torch.ones_like(p)).clamp_min(1e-20))


def weights_of(algo, mask, td, q_tot, is_weights):
    return algo.sampler.loss_weights(Signals(mask=mask.float(), td=td.detach(), q_tot=q_tot.detach()), is_weights)


def padded_tree_backup(td, q_taken, trace, mask, gamma, lam, n_steps):
    """y_t = Q̄_t + Σ_{k<n} (γλ)^k (Π_{l=1..k} c_{t+l}) δ_{t+k} over [b, T], shifting whole rows."""
    out, term, coef = torch.zeros_like(td), td * mask, 1.0
    for _ in range(n_steps):
        out = out + coef * term
        term = torch.cat([(term * trace)[:, 1:], td.new_zeros(td.shape[0], 1)], dim=1)
        coef *= gamma * lam
    return q_taken + out


def dop_oracle(algo: DOP, batch, is_weights) -> dict[str, torch.Tensor]:
    off = Padded(batch)
    on = Padded(algo.recent.uniform(algo.on_batch_size))
    n = INFO.n_agents

    def target_values(ep):
        q = algo.target_critic(critic_inputs(ep.state, ep.obs))  # [b, T+1, N, A]
        probs = algo.behaviour_probs(algo.actor(ep.inputs)[0], ep.avail)
        expected = algo.target_mixer((probs * q).sum(-1), ep.state)  # [b, T+1]
        taken = algo.target_mixer(q.gather(-1, ep.actions[..., None]).squeeze(-1), ep.state)
        acted = torch.cat([ep.mask, torch.zeros_like(ep.mask[:, :1])], dim=1) > 0
        trace = probs[:, :-1].gather(-1, ep.taken[..., None]).squeeze(-1).prod(-1)  # [b, T]
        return torch.where(acted, taken, expected), expected, trace

    def online_q_tot(ep):
        q = algo.critic(critic_inputs(ep.state[:, :-1], ep.obs[:, :-1]))
        return algo.mixer(q.gather(-1, ep.taken[..., None]).squeeze(-1), ep.state[:, :-1])  # [b, T]

    with torch.no_grad():
        taken, expected, trace = target_values(off)
        not_term = 1.0 - off.terminated
        td = (off.reward + algo.gamma * not_term * expected[:, 1:] - taken[:, :-1]) * off.mask
        y_off = padded_tree_backup(td, taken[:, :-1], trace, off.mask, algo.gamma, algo.tb_lambda,
                                   algo.tree_backup_steps)  # fmt: skip
        taken_on, _, _ = target_values(on)
        y_on = reference_td_lambda_targets(on.reward, on.terminated, on.mask, taken_on, algo.gamma, algo.td_lambda)
    q_off, q_on = online_q_tot(off), online_q_tot(on)
    err_off, err_on = q_off - y_off, q_on - y_on
    weights = weights_of(algo, off.mask, err_off, q_off, is_weights)
    loss = ((weights * err_off.pow(2) * off.mask).sum() + (err_on.pow(2) * on.mask).sum()) / (
        off.mask.sum() + on.mask.sum()
    )
    algo.optimise("critic", loss)
    out = {"critic_loss": loss.detach(), "td_error_abs": masked_mean(err_off.detach().abs(), off.mask),
           "td_error_abs_recent": masked_mean(err_on.detach().abs(), on.mask),
           "q_taken_mean": masked_mean(q_off.detach(), off.mask), "target_mean": masked_mean(y_off, off.mask),
           "td": err_off.detach()}  # fmt: skip

    ep = Padded(algo.recent.latest(algo.on_batch_size))
    mask = ep.mask[..., None]
    probs = algo.behaviour_probs(algo.actor(ep.inputs)[0][:, :-1], ep.avail[:, :-1])
    with torch.no_grad():
        q = algo.critic(critic_inputs(ep.state[:, :-1], ep.obs[:, :-1]))
        k = algo.mixer.k(ep.state[:, :-1])
        adv = decomposed_advantages(q, probs.detach(), ep.taken)
    log_pi = taken_log_probs(probs, ep.taken, mask)
    pg_loss = -masked_mean(k * adv * log_pi, mask) / n
    algo.optimise("actor", pg_loss)
    out.update(pg_loss=pg_loss.detach(), advantage_mean=masked_mean(adv, mask) / n,
               pi_max=masked_mean(probs.detach().max(-1).values, mask) / n)  # fmt: skip
    return out


def fop_oracle(algo: FOP, batch, is_weights, next_actions) -> dict[str, torch.Tensor]:
    """``next_actions`` [b, T+1, N]: the a' ∼ π the learner drew (at each transition's next step)."""
    ep, n, alpha = Padded(batch), INFO.n_agents, algo.alpha()
    mask = ep.mask[..., None]
    probs = algo.behaviour_probs(algo.actor(ep.inputs)[0][:, :-1], ep.avail[:, :-1])
    with torch.no_grad():
        q = torch.min(algo.critic1(ep.inputs)[0], algo.critic2(ep.inputs)[0])[:, :-1]
    log_pi = torch.log(probs.clamp_min(1e-20))
    policy_loss = masked_mean((probs * (alpha * log_pi - q)).sum(-1), mask) / n
    algo.optimise("actor", policy_loss)
    out = {"policy_loss": policy_loss.detach(),
           "entropy": masked_mean(categorical_entropy(probs.detach()), mask) / n}  # fmt: skip

    with torch.no_grad():
        probs = algo.behaviour_probs(algo.actor(ep.inputs)[0], ep.avail)  # [b, T+1, N, A]
        next_log_pi = torch.log(probs.gather(-1, next_actions[..., None]).squeeze(-1).clamp_min(1e-20))
        onehot = F.one_hot(next_actions, INFO.n_actions).double()
        next_q_tot = []
        for i in (1, 2):
            tq = getattr(algo, f"target_critic{i}")(ep.inputs)[0]
            chosen = tq.gather(-1, next_actions[..., None]).squeeze(-1)
            next_q_tot.append(getattr(algo, f"target_mixer{i}")(chosen, soft_values(tq, ep.avail, alpha),
                                                                 ep.state, onehot)[0])  # fmt: skip
        soft_v = torch.min(*next_q_tot) - alpha * next_log_pi.mean(-1)  # [b, T+1]
        y = reference_td_lambda_targets(ep.reward, ep.terminated, ep.mask, soft_v, algo.gamma, algo.td_lambda)
    taken_onehot = F.one_hot(ep.taken, INFO.n_actions).double()
    real = ep.mask.bool()
    q_tots, regs = [], []
    for i in (1, 2):
        q = getattr(algo, f"critic{i}")(ep.inputs)[0][:, :-1]
        chosen = q.gather(-1, ep.taken[..., None]).squeeze(-1)
        mixer = getattr(algo, f"mixer{i}")
        q_tot, _ = mixer(chosen, soft_values(q, ep.avail[:, :-1], alpha), ep.state[:, :-1], taken_onehot)
        q_tots.append(q_tot)
        regs.append(mixer.attention(ep.state[:, :-1][real])[1])  # the squared logits' mean over real transitions
    td = q_tots[0] - y
    weights = weights_of(algo, ep.mask, td, q_tots[0], is_weights)
    losses = [masked_mean(weights * (q_tot - y).pow(2), ep.mask) + reg for q_tot, reg in zip(q_tots, regs)]
    for i, loss in zip((1, 2), losses):
        algo.optimise(f"critic{i}", loss)
    out.update(critic_loss=losses[0].detach(), td_error_abs=masked_mean(td.detach().abs(), ep.mask),
               q_taken_mean=masked_mean(q_tots[0].detach(), ep.mask), target_mean=masked_mean(y, ep.mask),
               td=td.detach())  # fmt: skip
    return out


def vdac_oracle(algo: VDAC, batch, is_weights) -> dict[str, torch.Tensor]:
    ep, n = Padded(batch), INFO.n_agents
    mask = ep.mask
    out = algo.agent.body(ep.inputs)[0]
    logits, values = out[..., :-1], out[..., -1]  # [b, T+1, N, A], [b, T+1, N]
    v_tot = algo.mixer(values, ep.state)  # [b, T+1]
    v = v_tot.detach()
    targets = reference_td_lambda_targets(ep.reward, ep.terminated, mask, v, algo.gamma, algo.td_lambda)
    adv = (targets - v[:, :-1]) * mask
    td = v_tot[:, :-1] - targets
    weights = weights_of(algo, mask, td, v_tot[:, :-1], is_weights)
    probs = algo.behaviour_probs(logits[:, :-1], ep.avail[:, :-1])
    log_pi = taken_log_probs(probs, ep.taken, mask[..., None])
    pg_loss = -masked_mean(adv[..., None] * log_pi, mask[..., None]) / n
    vf_loss = masked_mean(weights * td.pow(2), mask)
    entropy = masked_mean(categorical_entropy(probs), mask[..., None]) / n
    loss = pg_loss + algo.vf_coef * vf_loss - algo.ent_coef * entropy
    algo.optimise("actor_critic", loss)
    return {"loss": loss.detach(), "pg_loss": pg_loss.detach(), "critic_loss": vf_loss.detach(),
            "td_error_abs": masked_mean(td.detach().abs(), mask), "advantage_mean": masked_mean(adv, mask),
            "v_tot_mean": masked_mean(v_tot[:, :-1].detach(), mask), "target_mean": masked_mean(targets, mask),
            "entropy": entropy.detach(), "td": td.detach()}  # fmt: skip


# ---- the comparison ------------------------------------------------------------------------------
def perturb_targets(algo, seed=1):
    """Target networks different from the online ones, so that reading the wrong one would show."""
    g = torch.Generator().manual_seed(seed)
    for name, module in algo.named_children():
        if name.startswith("target_"):
            for p in module.parameters():
                p.data.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def learner_and_twin(make):
    torch.manual_seed(0)
    algo = make(FixedInfoEnv(INFO)).double()
    perturb_targets(algo)
    if isinstance(algo, DOP):  # its recent episodes: two ragged batches, the same for both
        algo.recent.insert(ragged_batch(seed=5))
        algo.recent.insert(ragged_batch(seed=6))
    return algo, copy.deepcopy(algo)


def recording_draws(algo: FOP) -> list[torch.Tensor]:
    """Makes ``algo`` keep the a' it draws ([R, N] at each transition's next observation row)."""
    draws, sample = [], algo.sample_next_actions

    def record(probs):
        draws.append(sample(probs))
        return draws[-1]

    algo.sample_next_actions = record
    return draws


MAKERS = {
    "dop": lambda env: DOP(env, PerSampler(), LoopSettings(t_max=1), critic_hidden_dim=16, on_buffer_size=12,
                           on_batch_size=5, tree_backup_steps=3),  # fmt: skip
    "fop": lambda env: FOP(env, PerSampler(), LoopSettings(t_max=1), epsilon_start=0.2, epsilon_finish=0.2),
    "vdac": lambda env: VDAC(env, UniformSampler(), LoopSettings(t_max=1), ent_coef=0.01),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_packed_update_equals_the_padded_one(name):
    algo, twin = learner_and_twin(MAKERS[name])
    before = {k: p.detach().clone() for k, p in algo.named_parameters()}
    batch = ragged_batch()
    isw = torch.linspace(0.5, 1.5, len(LENGTHS), dtype=torch.float64)
    draws = recording_draws(algo) if name == "fop" else None
    with kernels.using("fused"):
        torch.manual_seed(3)
        out = algo.update(batch, isw)
    with kernels.using("torch"):
        torch.manual_seed(3)
        if name == "dop":
            ref = dop_oracle(twin, batch, isw)
        elif name == "fop":
            pk = EpisodePacking(batch["filled"])
            next_actions = torch.zeros(batch["actions"].shape, dtype=torch.long)  # [b, T+1, N]
            next_actions.view(-1, INFO.n_agents)[pk.obs_index[pk.next_in_obs]] = draws[0]
            ref = fop_oracle(twin, batch, isw, next_actions)
        else:
            ref = vdac_oracle(twin, batch, isw)
    mask = batch["filled"][:, :-1]
    torch.testing.assert_close(out.signals.td[mask], ref.pop("td")[mask], rtol=1e-9, atol=1e-10)
    assert torch.equal(out.signals.mask.bool(), mask)
    for key, value in ref.items():
        torch.testing.assert_close(out.metrics[key], value, rtol=1e-9, atol=1e-10, msg=lambda m, k=key: f"{k}: {m}")
    for (key, p), q in zip(algo.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-10, msg=lambda m, k=key: f"{k}: {m}")
    assert any(not torch.equal(p, before[k]) for k, p in algo.named_parameters())  # the update stepped


def with_new_padding(batch: dict[str, torch.Tensor], seed: int = 9) -> dict[str, torch.Tensor]:
    """The same episodes with other values wherever the batch is padding: after an episode's final
    observation (observations, states, available actions) or its last transition (actions, rewards,
    terminations)."""
    other = ragged_batch(seed)
    t = torch.arange(INFO.episode_limit + 1)
    lengths = batch["filled"].sum(1, keepdim=True)  # [b, 1]
    after_obs, after_trans = t > lengths, t >= lengths  # [b, T+1]
    out = dict(batch)
    for key, where in (("obs", after_obs), ("state", after_obs), ("avail_actions", after_obs),
                       ("actions", after_trans), ("reward", after_trans), ("terminated", after_trans)):  # fmt: skip
        w = where.view(*where.shape, *[1] * (batch[key].dim() - 2))
        out[key] = torch.where(w, other[key], batch[key])
    assert any(not torch.equal(out[k], batch[k]) for k in out)
    return out


@pytest.mark.parametrize("name", list(MAKERS))
def test_updates_do_not_read_the_padding(name):
    """Bit for bit the same update whatever the padding holds."""
    algo, twin = learner_and_twin(MAKERS[name])
    isw = torch.linspace(0.5, 1.5, len(LENGTHS), dtype=torch.float64)
    outs = []
    for learner, batch in ((algo, ragged_batch()), (twin, with_new_padding(ragged_batch()))):
        torch.manual_seed(3)
        outs.append(learner.update(batch, isw))
    for key in outs[0].metrics:
        assert torch.equal(outs[0].metrics[key], outs[1].metrics[key]), key
    for (key, p), q in zip(algo.named_parameters(), twin.parameters()):
        assert torch.equal(p, q), key


def test_fop_regulariser_averages_over_real_transitions():
    """FOP's attention regulariser is attend_reg_coef · Σ_heads mean over the real transitions and the
    agents of the squared attention logits. Before the learners were packed it was that mean over every
    padded [b, T] row, padding included (as the public code does over its zero-padded batches), so it
    depended on how much padding a batch had and on what lay in it; on this batch the two differ."""
    torch.manual_seed(0)
    mixer = FOP(FixedInfoEnv(INFO), UniformSampler(), LoopSettings(t_max=1)).double().mixer1
    batch = ragged_batch()
    state = batch["state"][:, :-1]  # [b, T, S]
    real = batch["filled"][:, :-1]  # [b, T]
    logits = torch.stack([sel(state) @ keys.t() for sel, keys in zip(mixer.selectors, mixer.agent_keys)], dim=-2)
    logits = logits / mixer.embed_dim**0.5  # [b, T, H, N]
    by_hand = mixer.attend_reg_coef * logits[real].pow(2).mean(dim=(0, 2)).sum()
    torch.testing.assert_close(mixer.attention(state[real])[1], by_hand, rtol=1e-12, atol=0)
    padded = mixer.attention(state)[1]  # what the padded learner used
    assert not torch.allclose(padded, by_hand, rtol=1e-3)
