"""Packed learner updates (macpo.nn.packing) equal the padded ones they replace.

The padded reference below is the update as written over the whole [B, T+1] batch (every
network on every padded timestep, losses masked): the packed update must give the same loss,
signals and gradients on a batch mixing lengths, including length-1 episodes, terminated and
truncated endings and a final observation after each episode's last transition. The padding
holds random values, so anything that leaked from it would show.
"""

import pytest
import torch
from torch import nn

from macpo.algos.base import LoopSettings
from macpo.algos.macpo import MACPO
from macpo.algos.qmix import QMIX
from macpo.algos.qplex import QPLEX
from macpo.algos.wqmix import WQMIX
from macpo.envs.base import EnvInfo, FixedInfoEnv
from macpo.nn.fused_gru import FusedGRU
from macpo.nn.kernels import gru as fused_gru
from macpo.nn.kernels import matmul as fast_linear
from macpo.nn.packing import EpisodePacking
from macpo.replay.samplers.macpo import MacpoSampler
from macpo.replay.samplers.uniform import UniformSampler
from tests.helpers import reference_agent_inputs as agent_inputs
from tests.helpers import reference_td_lambda_targets as td_lambda_targets

INFO = EnvInfo(n_agents=3, n_actions=5, obs_shape=7, state_shape=9, episode_limit=9)
LENGTHS = [9, 1, 4, 1, 9, 3, 6]  # transitions per episode; the final observation follows each
TERMINATED = [False, True, True, False, False, True, False]  # the rest were truncated


def mixed_batch(seed: int = 0, repeat: int = 1) -> dict[str, torch.Tensor]:
    """Episodes of LENGTHS (``repeat`` times over) padded to T+1 = 10 steps, with random values in the padding too."""
    g = torch.Generator().manual_seed(seed)
    b, t1, n, a = len(LENGTHS) * repeat, INFO.episode_limit + 1, INFO.n_agents, INFO.n_actions
    avail = torch.rand(b, t1, n, a, generator=g) < 0.7
    avail[..., 0] = True
    actions = torch.multinomial(avail.float().view(-1, a), 1, generator=g).view(b, t1, n)
    filled = torch.zeros(b, t1, dtype=torch.bool)
    terminated = torch.zeros(b, t1, dtype=torch.bool)
    for i, (length, term) in enumerate(zip(LENGTHS * repeat, TERMINATED * repeat)):
        filled[i, :length] = True
        terminated[i, length - 1] = term
    return {
        "obs": torch.rand(b, t1, n, INFO.obs_shape, generator=g),
        "state": torch.rand(b, t1, INFO.state_shape, generator=g),
        "avail_actions": avail,
        "actions": actions,
        "reward": torch.randn(b, t1, generator=g),
        "terminated": terminated,
        "filled": filled,
    }


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def padded_agent_pass(algo, batch):
    """The padded batch's fields (transitions: [B, T]) and the online agent's Q [B, T+1, N, A] on every step,
    with the taken actions' values [B, T, N]."""
    actions, avail, state = batch["actions"], batch["avail_actions"], batch["state"]
    reward, terminated = batch["reward"][:, :-1], batch["terminated"][:, :-1].float()
    mask = batch["filled"][:, :-1].float()
    inputs = agent_inputs(batch["obs"], actions, INFO.n_actions)
    q, _ = algo.agent(inputs)
    chosen = q[:, :-1].gather(-1, actions[:, :-1, :, None]).squeeze(-1)
    return actions, avail, state, reward, terminated, mask, inputs, q, chosen


def padded_qmix_loss(algo: QMIX, batch, is_weights):
    """QMIX's loss over the whole padded batch (the reference)."""
    actions, avail, state, reward, terminated, mask, inputs, q, chosen = padded_agent_pass(algo, batch)
    q_tot = algo.mixer(chosen, state[:, :-1])
    with torch.no_grad():
        target_q, _ = algo.target_agent(inputs)
        _, target_max = algo.greedy_target_values(q, target_q, avail)
        target_tot = algo.target_mixer(target_max, state)
        y = td_lambda_targets(reward, terminated, mask, target_tot, algo.gamma, algo.td_lambda)
    td = q_tot - y
    from macpo.replay.signals import Signals

    weights = algo.sampler.loss_weights(Signals(mask=mask, td=td.detach(), q_tot=q_tot.detach()), is_weights)
    return masked_mean(weights * td.pow(2), mask), td, mask


def padded_wqmix_loss(algo: WQMIX, batch, is_weights):
    """Weighted QMIX / MAC-PO's loss over the whole padded batch (the reference)."""
    from macpo.replay.signals import Signals

    actions, avail, state, reward, terminated, mask, inputs, q, chosen = padded_agent_pass(algo, batch)
    taken = actions[:, :-1]
    q_tot = algo.mixer(chosen, state[:, :-1])
    q_star = algo.central.value(algo.central.utilities(inputs)[:, :-1], taken, state[:, :-1])
    with torch.no_grad():
        greedy = q.detach().masked_fill(~avail, float("-inf")).argmax(-1)
        target_star = algo.target_central.value(algo.target_central.utilities(inputs), greedy, state)
        y = td_lambda_targets(reward, terminated, mask, target_star, algo.gamma, algo.td_lambda)
    td = q_tot - y
    signals = Signals(mask=mask, td=td.detach(), q_tot=q_tot.detach(), q_star=q_star.detach())
    signals.pi = algo.sampler.taken_action_probs(q[:, :-1].detach(), taken, avail[:, :-1])
    w_sampler = algo.sampler.loss_weights(signals, is_weights)
    w_scheme = algo.qmix_weights(td.detach(), y, taken, greedy[:, :-1], target_star[:, :-1])
    loss = masked_mean(w_sampler * w_scheme * td.pow(2), mask) + algo.central_loss_coef * masked_mean(
        (q_star - y).pow(2), mask
    )
    return loss, td, mask


def padded_qplex_loss(algo: QPLEX, batch, is_weights):
    """QPLEX's loss over the whole padded batch (the reference)."""
    from macpo.replay.signals import Signals

    actions, avail, state, reward, terminated, mask, inputs, q, chosen = padded_agent_pass(algo, batch)
    taken = actions[:, :-1]
    q_tot = algo.mixer(chosen, algo.greedy_values(q[:, :-1], avail[:, :-1]), taken, state[:, :-1])
    with torch.no_grad():
        target_q, _ = algo.target_agent(inputs)
        greedy, target_chosen = algo.greedy_target_values(q, target_q, avail)
        target_tot = algo.target_mixer(target_chosen, algo.greedy_values(target_q, avail), greedy, state)
        y = td_lambda_targets(reward, terminated, mask, target_tot, algo.gamma, algo.td_lambda)
    td = q_tot - y
    weights = algo.sampler.loss_weights(Signals(mask=mask, td=td.detach(), q_tot=q_tot.detach()), is_weights)
    return masked_mean(weights * td.pow(2), mask), td, mask


def perturb_targets(algo, seed=1):
    """Targets different from the online networks, so that double-Q choices matter."""
    g = torch.Generator().manual_seed(seed)
    for name, module in algo.named_children():
        if name.startswith("target_"):
            for p in module.parameters():
                p.data.add_(0.3 * torch.randn(p.shape, generator=g))


def grads(algo, loss):
    params = algo.online_parameters()
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("make,reference", [
    (lambda env: QMIX(env, UniformSampler(), LoopSettings(t_max=1)), padded_qmix_loss),
    (lambda env: MACPO(env, MacpoSampler(), LoopSettings(t_max=1)), padded_wqmix_loss),
    (lambda env: WQMIX(env, UniformSampler(), LoopSettings(t_max=1), weighting="cw"), padded_wqmix_loss),
    (lambda env: QPLEX(env, UniformSampler(), LoopSettings(t_max=1), td_lambda=0.6), padded_qplex_loss),
])  # fmt: skip
@pytest.mark.parametrize("rows_per_chunk", [2048, 5])  # one GRU chunk, many chunks
def test_packed_update_equals_padded(make, reference, rows_per_chunk, monkeypatch):
    monkeypatch.setattr(fused_gru, "ROWS_PER_CHUNK", rows_per_chunk)
    torch.manual_seed(0)
    algo = make(FixedInfoEnv(INFO))
    perturb_targets(algo)
    batch = mixed_batch()
    isw = torch.rand(len(LENGTHS), generator=torch.Generator().manual_seed(2)) + 0.5
    out = algo.compute_loss(batch, isw)
    ref_loss, ref_td, mask = reference(algo, batch, isw)
    assert out.loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    valid = mask.bool()
    torch.testing.assert_close(out.signals.td[valid], ref_td.detach()[valid], rtol=1e-5, atol=1e-5)
    assert torch.equal(out.signals.mask, mask)
    for g_packed, g_padded in zip(grads(algo, out.loss), grads(algo, ref_loss)):
        assert g_padded is not None and g_padded.abs().sum() > 0
        torch.testing.assert_close(g_packed, g_padded, rtol=1e-4, atol=1e-6)


def test_packing_rows_follow_the_episodes():
    batch = mixed_batch()
    pk = EpisodePacking(batch["filled"])
    assert pk.n_trans == sum(LENGTHS) and pk.n_obs == sum(LENGTHS) + len(LENGTHS)
    assert pk.obs_steps[0] == len(LENGTHS) and pk.obs_steps[-1] == LENGTHS.count(max(LENGTHS))
    assert pk.trans_steps == [sum(1 for v in LENGTHS if v > t) for t in range(max(LENGTHS))]
    # a transition row's next observation row is the same episode one step later
    t_of = torch.arange(INFO.episode_limit + 1).expand(len(LENGTHS), -1)
    e_of = torch.arange(len(LENGTHS))[:, None].expand_as(t_of)
    t_obs, e_obs = pk.pack_obs(t_of), pk.pack_obs(e_of)
    assert torch.equal(t_obs[pk.next_in_obs], t_obs[pk.trans_in_obs] + 1)
    assert torch.equal(e_obs[pk.next_in_obs], e_obs[pk.trans_in_obs])
    # agent inputs at real timesteps equal the padded ones; unpack inverts pack on transitions
    padded = agent_inputs(batch["obs"], batch["actions"], INFO.n_actions)
    assert torch.equal(pk.agent_inputs(batch["obs"], batch["actions"], INFO.n_actions), pk.pack_obs(padded))
    r = pk.pack_trans(batch["reward"])
    assert torch.equal(pk.unpack(r), batch["reward"][:, :-1] * batch["filled"][:, :-1])


@pytest.mark.parametrize("make,reference", [
    (lambda env: QMIX(env, UniformSampler(), LoopSettings(t_max=1)), padded_qmix_loss),
    (lambda env: MACPO(env, MacpoSampler(), LoopSettings(t_max=1)), padded_wqmix_loss),
])  # fmt: skip
def test_packed_update_equals_padded_at_onednn_sizes(make, reference, monkeypatch):
    """20× the batch: the mixers' rows and the GRU chunks exceed ``ONEDNN_MIN_ROWS``, so the fused
    agent's and the mixers' oneDNN matmuls run. They round differently from the padded path's MKL
    matmuls (fc1), so values agree to float32 rounding of their magnitude (targets reach ~75 here)."""
    assert 20 * sum(LENGTHS) >= fast_linear.ONEDNN_MIN_ROWS
    monkeypatch.setattr(fused_gru, "ROWS_PER_CHUNK", 256)
    torch.manual_seed(0)
    algo = make(FixedInfoEnv(INFO))
    perturb_targets(algo)
    batch = mixed_batch(repeat=20)
    isw = torch.rand(len(LENGTHS) * 20, generator=torch.Generator().manual_seed(2)) + 0.5
    out = algo.compute_loss(batch, isw)
    ref_loss, ref_td, mask = reference(algo, batch, isw)
    assert out.loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    valid = mask.bool()
    scale = ref_td.detach()[valid].abs().max().item()
    torch.testing.assert_close(out.signals.td[valid], ref_td.detach()[valid], rtol=1e-5, atol=2e-6 * scale)
    for g_packed, g_padded in zip(grads(algo, out.loss), grads(algo, ref_loss)):
        assert g_padded is not None and g_padded.abs().sum() > 0
        torch.testing.assert_close(g_packed, g_padded, rtol=1e-4, atol=1e-6 * g_padded.abs().max().item())


@pytest.mark.parametrize("make", [
    lambda env: QMIX(env, UniformSampler(), LoopSettings(t_max=1)),
    lambda env: MACPO(env, MacpoSampler(), LoopSettings(t_max=1)),
])  # fmt: skip
@pytest.mark.parametrize("rows_per_chunk", [2048, 5])
def test_packed_update_reads_storage_dtypes_exactly(make, rows_per_chunk, monkeypatch):
    """The replay hands out uint8 observations and actions; the agents cast their inputs a chunk
    at a time: the update must be bit for bit the one on the same batch given in float32."""
    monkeypatch.setattr(fused_gru, "ROWS_PER_CHUNK", rows_per_chunk)
    torch.manual_seed(0)
    algo = make(FixedInfoEnv(INFO))
    perturb_targets(algo)
    batch = mixed_batch(repeat=20)
    batch["obs"], batch["state"] = (batch["obs"] > 0.5).float(), (batch["state"] > 0.5).float()  # 0/1 grids
    stored = {**batch, "obs": batch["obs"].to(torch.uint8), "state": batch["state"].to(torch.uint8),
              "actions": batch["actions"].to(torch.uint8)}  # fmt: skip
    isw = torch.ones(len(LENGTHS) * 20)
    out32, out8 = algo.compute_loss(batch, isw), algo.compute_loss(stored, isw)
    assert torch.equal(out8.loss, out32.loss) and torch.equal(out8.signals.td, out32.signals.td)
    for g8, g32 in zip(grads(algo, out8.loss), grads(algo, out32.loss)):
        assert g32 is not None and torch.equal(g8, g32)


def test_packed_lambda_returns_equal_padded():
    batch = mixed_batch()
    pk = EpisodePacking(batch["filled"])
    values = torch.randn(len(LENGTHS), INFO.episode_limit + 1)
    reward = batch["reward"]
    mask = batch["filled"][:, :-1].float()
    padded = td_lambda_targets(reward[:, :-1], batch["terminated"][:, :-1], mask, values, 0.9, 0.6)
    next_values = values[:, 1:].flatten()[pk.trans_pad_index]
    packed = pk.td_lambda_targets(pk.pack_trans(reward), pk.pack_trans(batch["terminated"]), next_values, 0.9, 0.6)
    torch.testing.assert_close(packed, padded.flatten()[pk.trans_pad_index], rtol=0, atol=1e-6)


def test_packed_gru_equals_pytorch_packed_sequence(monkeypatch):
    """Forward and all gradients against nn.GRU on the same PackedSequence (float64, chunked)."""
    monkeypatch.setattr(fused_gru, "ROWS_PER_CHUNK", 7)
    torch.manual_seed(0)
    gru = FusedGRU(5, 6).double()
    ref = nn.GRU(5, 6).double()
    ref.load_state_dict(gru.state_dict())
    lengths = [6, 6, 4, 1, 1]
    sizes = [sum(v > t for v in lengths) for t in range(max(lengths))]
    x = torch.randn(sum(sizes), 5, dtype=torch.float64, requires_grad=True)
    h = gru.packed(x, sizes)
    h_ref = ref(nn.utils.rnn.PackedSequence(x, torch.tensor(sizes)))[0].data
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-12)
    w = torch.randn_like(h)
    got = torch.autograd.grad((h * w).sum(), [x, *gru.parameters()])
    want = torch.autograd.grad((h_ref * w).sum(), [x, *ref.parameters()])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_packed_fallback_path_matches_the_fused_one(monkeypatch):
    """The path CUDA takes (nn.GRU on a PackedSequence, cuDNN there) gives the fused path's result."""
    torch.manual_seed(0)
    gru = FusedGRU(4, 5)
    sizes = [3, 3, 2, 1]
    x = torch.randn(sum(sizes), 4)
    fused = gru.packed(x, sizes)
    monkeypatch.setattr(FusedGRU, "fused_applies", lambda self, x: False)
    torch.testing.assert_close(gru.packed(x, sizes), fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows_per_chunk", [3, 7, 2048])
def test_no_grad_agent_walk_equals_the_training_one(rows_per_chunk, monkeypatch):
    """Target networks walk without keeping h (two chunk buffers in turn): same Q-values, bit for bit,
    as the walk that keeps every row's h for the backward."""
    monkeypatch.setattr(fused_gru, "ROWS_PER_CHUNK", rows_per_chunk)
    from macpo.nn.agent import RNNAgent

    torch.manual_seed(0)
    agent = RNNAgent(INFO.obs_shape + INFO.n_actions + INFO.n_agents, INFO.n_actions, 16)
    pk = EpisodePacking(mixed_batch(repeat=3)["filled"])
    x = torch.randint(0, 2, (pk.n_obs, INFO.n_agents, INFO.obs_shape + INFO.n_actions + INFO.n_agents),
                      dtype=torch.uint8)  # fmt: skip
    trained = agent.forward_packed(x, pk.obs_steps)
    assert trained.requires_grad
    with torch.no_grad():
        target = agent.forward_packed(x, pk.obs_steps)
    assert torch.equal(target, trained.detach())

