"""QMIX, WQMIX (OW/CW) and MAC-PO learners on hand-made batches."""

import pytest
import torch

from macpo.algos.base import LoopSettings
from macpo.algos.macpo import MACPO
from macpo.algos.qmix import QMIX
from macpo.algos.wqmix import WQMIX
from macpo.replay.samplers.macpo import MacpoSampler
from macpo.replay.samplers.uniform import UniformSampler
from macpo.rollout import Collector
from tests.helpers import small_env

LOOP = LoopSettings(t_max=1000)


def real_batch(algo):
    episodes, _ = Collector(algo.env).run(algo.explore_policy(), seed=3)
    return episodes


def test_ow_weights_down_weight_overestimates():
    algo = WQMIX(small_env(), UniformSampler(), LOOP, weighting="ow", w=0.5)
    td = torch.tensor([[-1.0, 0.0, 2.0]])
    w = algo.qmix_weights(td, None, None, None, None)
    assert w.tolist() == [[1.0, 0.5, 0.5]]


def test_cw_weights_keep_greedy_actions_and_underestimated_targets():
    algo = WQMIX(small_env(), UniformSampler(), LOOP, weighting="cw", w=0.75)
    td = torch.zeros(1, 3)
    taken = torch.tensor([[[1, 2], [1, 2], [0, 2]]])  # [1, T=3, N=2]
    greedy = torch.tensor([[[1, 2], [0, 2], [1, 2]]])
    y = torch.tensor([[0.0, 5.0, 0.0]])
    q_star_greedy = torch.tensor([[1.0, 1.0, 1.0]])
    w = algo.qmix_weights(td, y, taken, greedy, q_star_greedy)
    # t0: taken is greedy → 1; t1: not greedy but y > Q*(greedy) → 1; t2: neither → α
    assert w.tolist() == [[1.0, 1.0, 0.75]]


def test_invalid_wqmix_options():
    with pytest.raises(ValueError, match="algo.weighting"):
        WQMIX(small_env(), UniformSampler(), LOOP, weighting="xx")
    with pytest.raises(ValueError, match="algo.w"):
        WQMIX(small_env(), UniformSampler(), LOOP, w=0.0)
    with pytest.raises(ValueError, match="takes its weights from the sampler"):
        MACPO(small_env(), MacpoSampler(), LOOP, weighting="ow")


def test_qmix_cannot_serve_a_sampler_needing_q_star():
    with pytest.raises(ValueError, match="q_star"):
        QMIX(small_env(), MacpoSampler(), LOOP)


def test_macpo_sampler_weights_only_the_qmix_loss():
    torch.manual_seed(0)
    env = small_env()
    uniform = MACPO(env, UniformSampler(), LOOP)
    torch.manual_seed(0)
    weighted = MACPO(env, MacpoSampler(), LOOP)
    batch = real_batch(uniform)
    isw = torch.ones(batch["obs"].shape[0])
    out_u = uniform.compute_loss(batch, isw)
    out_w = weighted.compute_loss(batch, isw)
    assert torch.allclose(out_u.metrics["central_loss"], out_w.metrics["central_loss"])
    assert not torch.allclose(out_u.metrics["qmix_loss"], out_w.metrics["qmix_loss"])
    s = out_w.signals
    assert s.q_star is not None and s.pi is not None and s.td is not None
    assert s.pi.shape == (*s.mask.shape, env.env_info.n_agents)
    assert torch.isfinite(out_w.loss)


def test_loss_backpropagates_into_agent_mixer_and_central_q():
    algo = MACPO(small_env(), MacpoSampler(), LOOP)
    batch = real_batch(algo)
    out = algo.compute_loss(batch, torch.ones(batch["obs"].shape[0]))
    out.loss.backward()
    for module in (algo.agent, algo.mixer, algo.central):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(p.grad is None for p in algo.target_central.parameters())
    ids = {id(p) for p in algo.online_parameters()}
    assert not ids & {id(p) for p in algo.target_central.parameters()}


def test_agent_q_clamp_bounds_utilities():
    algo = QMIX(small_env(), UniformSampler(), LOOP, agent_q_clamp=[-5.0, 2.0])
    for p in algo.agent.fc2.parameters():
        p.data.fill_(10.0)  # push every utility far above the clamp
    batch = real_batch(algo)
    from tests.helpers import reference_agent_inputs as agent_inputs

    q, _ = algo.agent(agent_inputs(batch["obs"], batch["actions"], 6))
    assert q.max() <= 2.0 and q.min() >= -5.0


def test_td_error_is_zero_when_target_equals_prediction():
    """With γ = 0 the target is the reward: a mixer returning exactly the reward gives δ = 0."""
    algo = QMIX(small_env(), UniformSampler(), LOOP, gamma=0.0)
    batch = real_batch(algo)
    out = algo.compute_loss(batch, torch.ones(batch["obs"].shape[0]))
    q_tot = out.signals.q_tot
    y = q_tot - out.signals.td
    mask = out.signals.mask.bool()
    assert torch.allclose(y[mask], batch["reward"][:, :-1][mask])
