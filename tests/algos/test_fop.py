"""FOP: the entropy-regularised target, soft values, the temperature schedule, the mixer, the learner."""

import math

import pytest
import torch

from macpo.algos.base import LoopSettings
from macpo.algos.fop import FOP
from macpo.envs.predator_prey import PredatorPrey
from macpo.nn.fop_mixer import FOPMixer
from macpo.nn.soft_targets import linear_schedule, soft_values
from macpo.replay.samplers.uniform import UniformSampler
from macpo.rollout import Collector
from tests.helpers import brute_force_lambda_return, entropy_regularised_targets, learned_return


def test_one_step_target_by_hand():
    """λ = 0: y_t = r_t + γ(1 − d_t)[Q̄_tot(s', a') − α · mean_i log π_i(a'_i)]."""
    r = torch.tensor([[1.0, 2.0]])
    term = torch.tensor([[0.0, 1.0]])
    mask = torch.ones(1, 2)
    next_q = torch.tensor([[0.0, 4.0, 6.0]])
    log_pi = torch.log(torch.tensor([[[1.0, 1.0], [0.5, 0.25], [0.1, 0.1]]]))  # [1, 3, N=2]
    alpha, gamma = 0.2, 0.9
    y = entropy_regularised_targets(r, term, mask, next_q, log_pi, alpha, gamma, td_lambda=0.0)
    soft_next = 4.0 - alpha * (math.log(0.5) + math.log(0.25)) / 2
    assert y[0, 0].item() == pytest.approx(1.0 + gamma * soft_next)
    assert y[0, 1].item() == pytest.approx(2.0)  # terminal: no bootstrap, no entropy bonus


@pytest.mark.parametrize("lam", [0.0, 0.8])
def test_lambda_target_is_a_lambda_return_of_soft_values(lam):
    torch.manual_seed(1)
    t, length, n = 6, 4, 3
    r, next_q = torch.randn(1, t), torch.randn(1, t + 1)
    log_pi = torch.log(torch.rand(1, t + 1, n))
    mask = torch.zeros(1, t)
    mask[0, :length] = 1
    term = torch.zeros(1, t)  # truncated: bootstraps from the state after the last transition
    y = entropy_regularised_targets(r, term, mask, next_q, log_pi, 0.3, 0.95, lam)
    soft = (next_q - 0.3 * log_pi.mean(-1))[0].tolist()
    want = brute_force_lambda_return(r[0].tolist(), soft, length, False, 0.95, lam)
    assert torch.allclose(y[0, :length], torch.tensor(want), atol=1e-5)


def test_soft_value_is_a_temperature_scaled_log_sum_exp_over_available_actions():
    q = torch.tensor([1.0, 2.0, 100.0])
    avail = torch.tensor([True, True, False])
    assert soft_values(q, avail, 0.5).item() == pytest.approx(0.5 * math.log(math.exp(2) + math.exp(4)))
    assert soft_values(q, avail, 1e-3).item() == pytest.approx(2.0, abs=1e-3)  # α → 0: the max
    assert soft_values(q, avail, 0.5).item() >= 2.0  # a soft max never falls below the max


def test_temperature_schedule_matches_the_public_formula():
    """The public code's α = max(0.05, 0.5 − t/200000) is 0.5 → 0.05 linearly over 90k steps."""
    for t in (0, 1000, 45_000, 89_999, 90_000, 500_000):
        assert linear_schedule(t, 0.5, 0.05, 90_000) == pytest.approx(max(0.05, 0.5 - t / 200_000))


def test_mixer_reduces_to_the_weighted_sum_where_every_agent_acts_softly_greedy():
    """Where Q_i = V_i the joint-action term vanishes: Q_tot = Σ w_i Q_i + V(s), whatever λ(s, a)."""
    torch.manual_seed(0)
    mixer = FOPMixer(n_agents=2, n_actions=3, state_dim=4)
    state, q = torch.randn(5, 2, 4), torch.randn(5, 2, 2)
    actions = torch.nn.functional.one_hot(torch.randint(0, 3, (5, 2, 2)), 3).float()
    q_tot, reg = mixer(q, q, state, actions)
    w, _ = mixer.attention(state)
    assert torch.allclose(q_tot, (w * q).sum(-1) + mixer.value(state).squeeze(-1), atol=1e-5)
    assert reg.item() >= 0
    assert torch.allclose(w.sum(-1), torch.full((5, 2), 4.0))  # 4 heads, each a softmax over agents
    # the joint-action weights act on a stopped-gradient advantage: Q_i's gradient is w_i alone
    q = q.requires_grad_(True)
    v = q.detach() - 1.0
    mixer(q, v, state, actions)[0].sum().backward()
    assert torch.allclose(q.grad, w + 1e-10, atol=1e-5)


# ---- the algorithm ------------------------------------------------------------------------------
def test_one_update_steps_the_actor_and_both_critics_and_alpha_decays():
    torch.manual_seed(0)
    env = PredatorPrey(4, seed=0, grid_size=5, n_agents=2, n_prey=1, episode_limit=10)
    fop = FOP(env, UniformSampler(), LoopSettings(t_max=1000), alpha_anneal_time=100)
    episodes, _ = Collector(env).run(fop.explore_policy(), seed=3)
    before = {n: p.detach().clone() for n, p in fop.named_parameters()}
    out = fop.update(episodes, torch.ones(4))
    changed = {n.split(".")[0] for n, p in fop.named_parameters() if not torch.equal(before[n], p)}
    assert changed == {"actor", "critic1", "critic2", "mixer1", "mixer2"}
    assert torch.isfinite(out.loss) and out.signals.td is not None
    assert fop.alpha() == pytest.approx(0.5)
    fop.counters["env_steps"] = 50
    assert fop.alpha() == pytest.approx(0.275) and fop.exploration_metrics()["alpha"] == pytest.approx(0.275)
    fop.counters["env_steps"] = 10_000
    assert fop.alpha() == pytest.approx(0.05)
    with pytest.raises(ValueError, match="alpha_start"):
        FOP(env, UniformSampler(), LoopSettings(t_max=1000), alpha_finish=0.0)


@pytest.mark.slow
def test_fop_learns_small_predator_prey(tmp_path):
    """FOP's greedy test return beats the random policy's by a clear margin within the demo budget
    (public hyperparameters; the temperature reaches its floor after 3k of the 12k env steps
    instead of 90k, the budget being that small). FOP's update is the costliest of the suite
    (actor + twin critics and mixers on 32 episodes, once per episode): minutes on 2 cores."""
    final, random_return, test = learned_return(
        tmp_path, ["algo=fop", "budget=demo", "algo.alpha_anneal_time=3000"], timeout=1800
    )
    assert random_return < 0.5
    # 5 points of capture rate above random (+10 per capture), and over 10x its return
    assert final > random_return + 0.5 and final > 10 * random_return, (final, random_return, test)
