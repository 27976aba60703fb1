"""VDAC-mix: the joint advantage against a brute-force λ-return, and the learner."""

import pytest
import torch

from macpo.algos.base import LoopSettings
from macpo.algos.vdac import VDAC
from macpo.nn.vdac import split_actor_critic
from macpo.replay.samplers.per import PerSampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.rollout import Collector
from tests.helpers import brute_force_lambda_return, learned_return, small_env, vdac_advantages


@pytest.mark.parametrize("terminated", [True, False])
@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
def test_advantage_is_lambda_return_minus_mixed_value(lam, terminated):
    torch.manual_seed(2)
    t, length = 8, 6
    r, v = torch.randn(2, t), torch.randn(2, t + 1)
    mask = torch.zeros(2, t)
    mask[:, :length] = 1
    term = torch.zeros(2, t)
    if terminated:
        term[:, length - 1] = 1
    targets, adv = vdac_advantages(r, term, mask, v, gamma=0.99, td_lambda=lam)
    for i in range(2):
        g = brute_force_lambda_return(r[i].tolist(), v[i].tolist(), length, terminated, 0.99, lam)
        assert torch.allclose(targets[i, :length], torch.tensor(g), atol=1e-5)
        assert torch.allclose(adv[i, :length], torch.tensor(g) - v[i, :length], atol=1e-5)
    assert (adv[:, length:] == 0).all()  # padding carries no advantage


def test_one_step_advantage_by_hand():
    r = torch.tensor([[1.0, 0.0]])
    v = torch.tensor([[2.0, 3.0, 5.0]])
    term = torch.tensor([[0.0, 1.0]])
    targets, adv = vdac_advantages(r, term, torch.ones(1, 2), v, gamma=0.5, td_lambda=0.0)
    assert torch.allclose(targets, torch.tensor([[1 + 0.5 * 3, 0.0]]))
    assert torch.allclose(adv, torch.tensor([[2.5 - 2.0, 0.0 - 3.0]]))


def test_advantages_carry_no_gradient_into_the_critic():
    v = torch.randn(1, 4, requires_grad=True)
    targets, adv = vdac_advantages(torch.ones(1, 3), torch.zeros(1, 3), torch.ones(1, 3), v, 0.9, 0.8)
    assert not targets.requires_grad and not adv.requires_grad


def test_split_heads():
    out = torch.arange(8.0).view(2, 4)
    logits, value = split_actor_critic(out)
    assert logits.shape == (2, 3) and torch.equal(value, torch.tensor([3.0, 7.0]))


# ---- the algorithm ------------------------------------------------------------------------------
def test_vdac_is_on_policy_and_refuses_replay_samplers():
    assert VDAC.on_policy
    with pytest.raises(ValueError, match="on-policy"):
        VDAC(small_env(), PerSampler(), LoopSettings(t_max=100))


def test_one_update_trains_agent_heads_and_mixer_and_explores_with_the_floor():
    torch.manual_seed(0)
    env = small_env()
    vdac = VDAC(env, UniformSampler(), LoopSettings(t_max=1000), epsilon_anneal_time=100)
    assert vdac.epsilon() == pytest.approx(0.5) and vdac.explore_policy().greedy is False
    assert vdac.greedy_policy().greedy
    episodes, _ = Collector(env).run(vdac.explore_policy(), seed=3)
    before = {n: p.detach().clone() for n, p in vdac.named_parameters()}
    out = vdac.update(episodes, torch.ones(4))
    changed = {n.split(".")[0] for n, p in vdac.named_parameters() if not torch.equal(before[n], p)}
    assert changed == {"agent", "mixer"}
    assert torch.isfinite(out.loss) and {"pg_loss", "critic_loss", "advantage_mean"} <= set(out.metrics)
    vdac.counters["env_steps"] = 1000
    assert vdac.epsilon() == pytest.approx(0.01)


@pytest.mark.slow
def test_vdac_learns_small_predator_prey(tmp_path):
    """VDAC's greedy test return beats the random policy's by a clear margin at a small seeded budget
    (on-policy updates on 8 episodes at a time, as the public config; 20k env steps)."""
    final, random_return, test = learned_return(
        tmp_path, ["algo=vdac", "budget=demo", "batch_size_run=8", "t_max=20000", "test_interval=2000"]
    )
    assert random_return < 0.5
    # 5 points of capture rate above random (+10 per capture), and over 10x its return
    assert final > random_return + 0.5 and final > 10 * random_return, (final, random_return, test)
