"""DOP: tree-backup targets against by-hand and brute-force computations, the linear mixer, the learner."""

import pytest
import torch

from macpo.algos.base import LoopSettings
from macpo.algos.dop import DOP
from macpo.envs.predator_prey import PredatorPrey
from macpo.nn.dop_critic import LinearMixer, decomposed_advantages
from macpo.replay.samplers.per import PerSampler
from macpo.replay.samplers.uniform import UniformSampler
from tests.helpers import expected_sarsa_errors, learned_return, tree_backup_targets


def test_tree_backup_by_hand():
    """n = 2, γλ = 0.5: y_t = Q̄_t + δ_t + 0.5 c_{t+1} δ_{t+1}."""
    td = torch.tensor([[1.0, 2.0, 3.0]])
    q = torch.tensor([[10.0, 20.0, 30.0]])
    trace = torch.tensor([[0.9, 0.5, 0.25]])  # c_0 never enters a target
    mask = torch.ones(1, 3)
    y = tree_backup_targets(td, q, trace, mask, gamma=0.5, tb_lambda=1.0, n_steps=2)
    assert torch.allclose(y, torch.tensor([[10 + 1 + 0.5 * 0.5 * 2, 20 + 2 + 0.5 * 0.25 * 3, 30 + 3.0]]))
    # one step is expected SARSA: Q̄ + δ = r + γ E_π Q̄'
    y1 = tree_backup_targets(td, q, trace, mask, gamma=0.5, tb_lambda=1.0, n_steps=1)
    assert torch.allclose(y1, q + td)


def test_expected_sarsa_errors_by_hand():
    r = torch.tensor([[1.0, 2.0, 0.0]])
    term = torch.tensor([[0.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # 2 real transitions, one padding step
    q_taken = torch.tensor([[4.0, 5.0, 6.0]])
    q_exp = torch.tensor([[7.0, 8.0, 9.0, 10.0]])
    td = expected_sarsa_errors(r, term, mask, q_taken, q_exp, gamma=0.5)
    assert torch.allclose(td, torch.tensor([[1 + 0.5 * 8 - 4, 2 - 5.0, 0.0]]))


def brute_force_tree_backup(td, q, trace, length, gamma, lam, n):
    out = []
    for t in range(length):
        y = q[t]
        for k in range(n):
            if t + k >= length:
                break
            prod = 1.0
            for j in range(1, k + 1):
                prod *= trace[t + j]
            y += (gamma * lam) ** k * prod * td[t + k]
        out.append(y)
    return out


@pytest.mark.parametrize("n", [1, 3, 5, 12])
def test_tree_backup_matches_definition(n):
    torch.manual_seed(0)
    b, t, length = 2, 9, 7  # 7 real transitions, 2 padding steps
    td, q, trace = torch.randn(b, t), torch.randn(b, t), torch.rand(b, t)
    mask = torch.zeros(b, t)
    mask[:, :length] = 1
    y = tree_backup_targets(td, q, trace, mask, gamma=0.99, tb_lambda=0.93, n_steps=n)
    for i in range(b):
        want = brute_force_tree_backup(td[i].tolist(), q[i].tolist(), trace[i].tolist(), length, 0.99, 0.93, n)
        assert torch.allclose(y[i, :length], torch.tensor(want), atol=1e-5)


def test_on_policy_deterministic_backup_is_the_discounted_return():
    """Trace 1 (the policy takes the replayed actions surely), λ = 1, n ≥ T: δ's telescope to Σ γ^k r."""
    gamma = 0.9
    r = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    term = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    mask = torch.ones(1, 4)
    q_next = torch.randn(1, 5)  # a deterministic policy: E_π Q̄(s, ·) = Q̄(s, a) of the action it takes
    td = expected_sarsa_errors(r, term, mask, q_next[:, :-1], q_next, gamma)
    y = tree_backup_targets(td, q_next[:, :-1], torch.ones(1, 4), mask, gamma, 1.0, n_steps=4)
    returns = [sum(gamma**k * r[0, t + k].item() for k in range(4 - t)) for t in range(4)]
    assert torch.allclose(y[0], torch.tensor(returns), atol=1e-5)


def test_invalid_backup_length():
    with pytest.raises(ValueError, match="n_steps >= 1"):
        tree_backup_targets(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), 0.9, 0.9, 0)


def test_linear_mixer_weights_are_a_convex_credit_assignment():
    torch.manual_seed(0)
    mixer = LinearMixer(n_agents=3, state_dim=5)
    state, q = torch.randn(2, 4, 5), torch.randn(2, 4, 3)
    k = mixer.k(state)
    assert (k >= 0).all() and torch.allclose(k.sum(-1), torch.ones(2, 4))
    bumped = q.clone()
    bumped[..., 1] += 2.0
    # Q_tot is linear in each Q_i with slope k_i(s)
    assert torch.allclose(mixer(bumped, state) - mixer(q, state), 2.0 * k[..., 1], atol=1e-5)


def test_decomposed_advantage_is_zero_in_expectation_under_the_policy():
    q = torch.tensor([[[[1.0, 3.0, 5.0]]]])  # [1, 1, 1, 3]
    probs = torch.tensor([[[[0.5, 0.25, 0.25]]]])
    adv = [decomposed_advantages(q, probs, torch.tensor([[[a]]])).item() for a in range(3)]
    assert adv == pytest.approx([1 - 2.5, 3 - 2.5, 5 - 2.5])
    assert sum(p * a for p, a in zip([0.5, 0.25, 0.25], adv)) == pytest.approx(0.0)


# ---- the algorithm ------------------------------------------------------------------------------
def small_dop(**kwargs):
    env = PredatorPrey(4, seed=0, grid_size=5, n_agents=2, n_prey=1, episode_limit=10)
    return DOP(env, UniformSampler(), LoopSettings(t_max=1000), **kwargs)


def test_collected_episodes_fill_the_recent_buffer_and_latest_returns_the_newest():
    torch.manual_seed(0)
    dop = small_dop(on_buffer_size=6, on_batch_size=3, critic_hidden_dim=16)
    first, _ = dop.collector.run(dop.explore_policy(), seed=1)
    second, _ = dop.collector.run(dop.explore_policy(), seed=2)
    assert len(dop.recent) == 6  # 8 collected, the 6 most recent kept
    latest = dop.recent.latest(3)
    t = latest["obs"].shape[1]
    newest_first = second["obs"].flip(0)[:3, :t]  # the last inserted episode comes first
    assert torch.equal(latest["obs"], newest_first.float())


def test_one_update_steps_critic_and_actor_and_gives_the_sampler_td():
    torch.manual_seed(0)
    dop = small_dop(critic_hidden_dim=16)
    episodes, _ = dop.collector.run(dop.explore_policy(), seed=3)
    before = {n: p.detach().clone() for n, p in dop.named_parameters()}
    out = dop.update(episodes, torch.ones(4))
    changed = {n.split(".")[0] for n, p in dop.named_parameters() if not torch.equal(before[n], p)}
    assert changed == {"actor", "critic", "mixer"}  # targets stay frozen until update_targets
    assert out.signals.td.shape == episodes["reward"][:, :-1].shape and torch.isfinite(out.loss)
    for key in ("critic_loss", "pg_loss", "td_error_abs", "td_error_abs_recent"):
        assert torch.isfinite(out.metrics[key]), key


def test_dop_serves_td_samplers_and_validates_its_options():
    env = PredatorPrey(2, seed=0, grid_size=5, n_agents=2, n_prey=1, episode_limit=10)
    DOP(env, PerSampler(), LoopSettings(t_max=100), critic_hidden_dim=8)  # PER needs only δ
    with pytest.raises(ValueError, match="on_batch_size"):
        small_dop(on_buffer_size=4, on_batch_size=8)
    with pytest.raises(ValueError, match="tree_backup_steps"):
        small_dop(tree_backup_steps=0)


def test_recent_episodes_travel_in_checkpoints():
    torch.manual_seed(0)
    dop = small_dop(on_buffer_size=6, on_batch_size=3, critic_hidden_dim=16)
    dop.collector.run(dop.explore_policy(), seed=1)
    checkpoint = {}
    dop.on_save_checkpoint(checkpoint)
    resumed = small_dop(on_buffer_size=6, on_batch_size=3, critic_hidden_dim=16)
    resumed.on_load_checkpoint(checkpoint)
    assert len(resumed.recent) == 4 and resumed.recent.buffer.pos == dop.recent.buffer.pos
    assert torch.equal(resumed.recent.latest(3)["obs"], dop.recent.latest(3)["obs"])


@pytest.mark.slow
def test_dop_learns_small_predator_prey(tmp_path):
    """DOP's greedy test return beats the random policy's by a clear margin at a small seeded budget
    (the demo budget's replay, 8 envs collecting, 16k env steps; the public hyperparameters)."""
    final, random_return, test = learned_return(
        tmp_path, ["algo=dop", "budget=demo", "batch_size_run=8", "t_max=16000", "test_interval=2000"]
    )
    assert random_return < 0.5
    # 5 points of capture rate above random (+10 per capture), and over 10x its return
    assert final > random_return + 0.5 and final > 10 * random_return, (final, random_return, test)
