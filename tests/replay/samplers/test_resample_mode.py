"""`mode: resample` (stored priorities, proportional draws, IS weights); its equivalence with reweight."""

from __future__ import annotations

import pytest
import torch

from macpo.replay.samplers import MacpoSampler, PerSampler, UniformSampler
from macpo.replay.signals import Signals

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def constant_td_signals(scores: list[float], t: int = 3, device="cpu") -> Signals:
    """Episodes whose every timestep has |δ| = the episode's score (PER's stored priority)."""
    td = torch.tensor(scores, device=device)[:, None].expand(len(scores), t).clone()  # [B, T]
    return Signals(mask=torch.ones_like(td), td=td)


def resample_per(capacity: int, scores: list[float], device="cpu", **kwargs) -> PerSampler:
    sampler = PerSampler(mode="resample", **kwargs)
    sampler.attach(capacity, device)
    idx = torch.arange(len(scores), device=device)
    sampler.on_insert(idx)
    sampler.update(idx, constant_td_signals(scores, device=device))
    return sampler


@pytest.mark.parametrize("device", DEVICES)
def test_new_episodes_get_the_current_max_priority(device):
    sampler = PerSampler(mode="resample")
    sampler.attach(8, device)
    sampler.on_insert(torch.tensor([0, 1]))
    assert sampler.priorities.tolist()[:3] == [1.0, 1.0, 0.0]  # nothing stored yet: 1.0
    sampler.update(torch.tensor([0, 1]), constant_td_signals([3.0, 0.5], device=device))
    assert sampler.priorities.tolist()[:2] == pytest.approx([3.0, 0.5])
    sampler.on_insert(torch.tensor([2]))
    assert sampler.priorities[2].item() == pytest.approx(3.0)
    sampler.update(torch.tensor([0, 2]), constant_td_signals([0.1, 0.2], device=device))
    sampler.on_insert(torch.tensor([3, 0]))  # slot 0 is overwritten by a new episode
    assert sampler.priorities.tolist()[:4] == pytest.approx([0.5, 0.5, 0.2, 0.5])
    assert sampler.priorities.device.type == torch.device(device).type


def test_reweight_mode_keeps_no_priorities_and_samples_uniformly():
    torch.manual_seed(0)
    sampler = PerSampler(mode="reweight")
    sampler.attach(100, "cpu")
    sampler.on_insert(torch.arange(10))
    sampler.update(torch.arange(10), constant_td_signals([5.0] * 10))
    assert (sampler.priorities == 0).all()
    idx, isw = sampler.sample(5000, n_stored=10)
    assert idx.min() >= 0 and idx.max() < 10
    assert (isw == 1).all()
    counts = torch.bincount(idx, minlength=10).float()
    assert ((counts - 500).abs() < 100).all()


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_sampling_frequencies_are_proportional_to_priority_to_the_alpha(alpha):
    torch.manual_seed(1)
    scores = [1.0, 2.0, 3.0, 4.0, 10.0]
    sampler = resample_per(10, scores, alpha=alpha)
    draws = 20000
    idx, _ = sampler.sample(draws, n_stored=5)
    counts = torch.bincount(idx, minlength=5).double()
    expected_p = torch.tensor(scores, dtype=torch.float64) ** alpha
    expected = draws * expected_p / expected_p.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 18.47  # df = 4, p = 0.001
    uniform = torch.full((5,), draws / 5, dtype=torch.float64)
    assert ((counts - uniform) ** 2 / uniform).sum().item() > 100  # clearly not uniform


def test_sampling_never_reaches_past_n_stored():
    torch.manual_seed(2)
    sampler = resample_per(10, [1.0] * 10)
    sampler.priorities[3:] = 1e6  # slots not yet part of the buffer's stored range
    idx, _ = sampler.sample(1000, n_stored=3)
    assert idx.max() < 3
    with pytest.raises(RuntimeError, match="empty"):
        sampler.sample(4, n_stored=0)


@pytest.mark.parametrize("normalize", [True, False])
def test_importance_weights_and_beta_annealing(normalize):
    torch.manual_seed(3)
    scores = [1.0, 2.0, 4.0, 8.0]
    sampler = resample_per(4, scores, alpha=1.0, beta=0.4, beta_end=1.0, normalize=normalize)
    probs = torch.tensor(scores) / sum(scores)
    for progress, beta in ((0.0, 0.4), (0.5, 0.7), (1.0, 1.0), (3.0, 1.0)):
        idx, isw = sampler.sample(64, n_stored=4, progress=progress)
        raw = (4 * probs[idx]) ** -beta
        expected = raw / (4 * probs.min()) ** -beta if normalize else raw
        torch.testing.assert_close(isw, expected, rtol=1e-5, atol=0.0)
        assert sampler.diagnostics()["sampler/beta"] == pytest.approx(beta)
    if normalize:
        assert isw.max() <= 1.0 + 1e-6


def test_resample_loss_weights_are_the_importance_weights_over_time():
    sampler = PerSampler(mode="resample")
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    signals = Signals(mask=mask, td=torch.tensor([[1.0, 100.0, 5.0], [0.0, 2.0, 3.0]]))
    w = sampler.loss_weights(signals, torch.tensor([0.5, 0.25]))
    assert w.tolist() == [[0.5, 0.5, 0.0], [0.25, 0.25, 0.25]]


@pytest.mark.parametrize(("aggregate", "expected"), [("mean", 2.0), ("max", 3.0)])
def test_episode_priority_aggregates_real_timesteps(aggregate, expected):
    sampler = PerSampler(mode="resample", episode_priority=aggregate, alpha=0.6)
    sampler.attach(4, "cpu")
    signals = Signals(mask=torch.tensor([[1.0, 1.0, 0.0]]), td=torch.tensor([[1.0, -3.0, 100.0]]))
    sampler.update(torch.tensor([2]), signals)
    assert sampler.priorities[2].item() == pytest.approx(expected)  # score without α; α applies when drawing


def test_macpo_episode_priority_is_its_full_score():
    sampler = MacpoSampler(mode="resample", alpha=1.0)
    sampler.attach(2, "cpu")
    signals = Signals(
        mask=torch.ones(1, 2),
        td=torch.tensor([[2.0, 1.0]]),
        q_tot=torch.tensor([[1.0, 0.0]]),
        q_star=torch.tensor([[0.0, 0.0]]),
        pi=torch.tensor([[[0.0, 1.0], [1.0, 1.0]]]),
    )
    sampler.update(torch.tensor([1]), signals)
    # step 0: |δ|=2, exp(−1), f=2; step 1: |δ|=1, exp(0), f=1
    expected = (2.0 * torch.exp(torch.tensor(-1.0)).item() * 2.0 + 1.0) / 2
    assert sampler.priorities[1].item() == pytest.approx(expected, rel=1e-6)
    assert {"factor/joint/mean", "factor/value/max", "factor/bellman/std"} <= set(sampler.diagnostics())


# ---- Fujimoto et al. (2020): sampling ∝ p equals weighting the loss by p (up to Monte-Carlo error) ----


def linear_problem(episodes: int = 6, steps: int = 4, dim: int = 3):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(episodes, steps, dim, generator=gen)  # [E, T, D]
    y = torch.randn(episodes, steps, generator=gen)  # [E, T]
    theta = torch.randn(dim, generator=gen)
    scores = [0.2, 1.0, 3.0, 0.5, 5.0, 2.0]
    return x, y, theta, scores


def weighted_grad(x, y, theta, w, mask) -> torch.Tensor:
    """∇θ of Σ w·mask·(xθ − y)² / Σ mask, the learner's weighted loss."""
    theta = theta.clone().requires_grad_(True)
    loss = (w * mask * (x @ theta - y) ** 2).sum() / mask.sum()
    (grad,) = torch.autograd.grad(loss, theta)
    return grad


def resample_grads(sampler, x, y, theta, draws: int, batch: int) -> torch.Tensor:
    """Per-draw gradients [draws, D] under the sampler's own draws and importance weights."""
    grads = []
    for _ in range(draws):
        idx, isw = sampler.sample(batch, n_stored=x.shape[0], progress=0.0)
        signals = Signals(mask=torch.ones(batch, x.shape[1]))
        w = sampler.loss_weights(signals, isw)  # [b, T]
        grads.append(weighted_grad(x[idx], y[idx], theta, w, signals.mask))
    return torch.stack(grads)


def test_resample_gradient_matches_reweight_gradient():
    torch.manual_seed(5)
    x, y, theta, scores = linear_problem()
    episodes, steps = y.shape
    mask = torch.ones(episodes, steps)
    reweight = PerSampler(mode="reweight", alpha=0.6)
    w = reweight.loss_weights(constant_td_signals(scores, t=steps))  # [E, T], mean 1
    target = weighted_grad(x, y, theta, w, mask)
    uniform = weighted_grad(x, y, theta, torch.ones_like(mask), mask)

    sampler = resample_per(episodes, scores, alpha=0.6, beta=0.0, beta_end=0.0)  # no IS correction
    grads = resample_grads(sampler, x, y, theta, draws=400, batch=16)
    mean, se = grads.mean(0), grads.std(0) / grads.shape[0] ** 0.5
    assert ((mean - target).abs() <= 4 * se).all(), (mean, target, se)
    assert ((uniform - target).abs() > 8 * se).any()  # the weights matter: the test can tell


def test_resample_with_full_importance_correction_matches_uniform_loss():
    torch.manual_seed(6)
    x, y, theta, scores = linear_problem()
    mask = torch.ones_like(y)
    uniform = weighted_grad(x, y, theta, torch.ones_like(mask), mask)
    sampler = resample_per(y.shape[0], scores, alpha=1.0, beta=1.0, beta_end=1.0, normalize=False)
    grads = resample_grads(sampler, x, y, theta, draws=400, batch=16)
    mean, se = grads.mean(0), grads.std(0) / grads.shape[0] ** 0.5
    assert ((mean - uniform).abs() <= 4 * se).all(), (mean, uniform, se)


# ---- the learner's loop, end to end on tensors ----------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["reweight", "resample"])
def test_learner_loop_runs_on_device(device, mode):
    torch.manual_seed(7)
    capacity, batch, steps, agents = 50, 8, 5, 3
    sampler = MacpoSampler(mode=mode)
    sampler.attach(capacity, device)
    stored = 0
    for it in range(6):
        new = torch.arange(stored, stored + 10, device=device) % capacity
        sampler.on_insert(new)
        stored = min(capacity, stored + 10)
        idx, isw = sampler.sample(batch, stored, progress=it / 5)
        assert idx.device.type == isw.device.type == torch.device(device).type
        signals = Signals(
            mask=torch.ones(batch, steps, device=device),
            td=torch.randn(batch, steps, device=device),
            q_tot=torch.randn(batch, steps, device=device),
            q_star=torch.randn(batch, steps, device=device),
            pi=torch.rand(batch, steps, agents, device=device),
        )
        w = sampler.loss_weights(signals, isw)
        assert w.shape == (batch, steps) and torch.isfinite(w).all()
        sampler.update(idx, signals)
    d = sampler.diagnostics()
    assert {"weights/max", "weights/mean", "weights/ess_frac", "factor/joint/mean"} <= set(d)
    if mode == "resample":
        assert {"sampler/beta", "priority/max", "priority/mean"} <= set(d)
        assert d["sampler/beta"] == pytest.approx(1.0)
        assert (sampler.priorities[:stored] > 0).all()


def test_uniform_resample_is_uniform():
    torch.manual_seed(8)
    sampler = UniformSampler(mode="resample")
    sampler.attach(10, "cpu")
    sampler.on_insert(torch.arange(10))
    sampler.update(torch.arange(10), Signals(mask=torch.ones(10, 2)))
    idx, isw = sampler.sample(4000, 10)
    assert torch.allclose(isw, torch.ones_like(isw))
    assert ((torch.bincount(idx, minlength=10) - 400).abs() < 100).all()


def test_resample_before_attach_is_a_clear_error():
    sampler = PerSampler(mode="resample")
    with pytest.raises(RuntimeError, match="attach"):
        sampler.on_insert(torch.tensor([0]))
    with pytest.raises(RuntimeError, match="attach"):
        sampler.sample(4, n_stored=2)
