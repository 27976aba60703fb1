"""The joint-action term f of Theorem 1 and the three-level rule of §4.3."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from macpo.replay.samplers.joint_term import joint_action_level, joint_action_term


def brute_force_f(pi: list[float]) -> float:
    """1 + P(exactly one agent deviates), by enumerating all 2^n keep/deviate patterns."""
    exactly_one = 0.0
    for keeps in itertools.product([True, False], repeat=len(pi)):
        if keeps.count(False) != 1:
            continue
        exactly_one += math.prod(p if keep else 1.0 - p for p, keep in zip(pi, keeps))
    return 1.0 + exactly_one


def theorem1_literal(pi: list[float]) -> float:
    """The formula exactly as printed: 1 + Σ_i Π_{j≠i} π_j − n Π_i π_i (O(n²), no division)."""
    n = len(pi)
    leave_one_out = sum(math.prod(pi[j] for j in range(n) if j != i) for i in range(n))
    return 1.0 + leave_one_out - n * math.prod(pi)


def random_pis(n: int, gen: torch.Generator, count: int = 64) -> torch.Tensor:
    """[count, n] probabilities in [0, 1], with exact zeros and ones sprinkled in."""
    pi = torch.rand(count, n, generator=gen, dtype=torch.float64)
    pick = torch.rand(count, n, generator=gen)
    pi[pick < 0.15] = 0.0
    pi[pick > 0.85] = 1.0
    return pi


@pytest.mark.parametrize("n", range(1, 9))
def test_f_matches_brute_force_enumeration(n):
    gen = torch.Generator().manual_seed(n)
    pi = random_pis(n, gen)  # [64, n]
    got = joint_action_term(pi)  # [64]
    for row, value in zip(pi.tolist(), got.tolist()):
        assert value == pytest.approx(brute_force_f(row), abs=1e-12)
        assert value == pytest.approx(theorem1_literal(row), abs=1e-12)
        assert 1.0 <= value <= 2.0


@pytest.mark.parametrize("n", range(2, 9))
def test_theorem2_cases(n):
    ones = [1.0] * n
    one_zero = [0.0] + [1.0] * (n - 1)
    two_zeros = [0.0, 0.0] + [1.0] * (n - 2)
    last_zero = [1.0] * (n - 1) + [0.0]
    pi = torch.tensor([ones, one_zero, two_zeros, last_zero], dtype=torch.float64)
    f = joint_action_term(pi)
    assert f.tolist() == [1.0, 2.0, 1.0, 2.0]
    # f = 2 is the maximum: no random interior point reaches it
    interior = torch.rand(500, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert joint_action_term(interior.clamp(1e-3, 1 - 1e-3)).max() < 2.0


def test_one_agent_gives_two_minus_pi():
    pi = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]  # [11, 1]
    assert torch.allclose(joint_action_term(pi), 2.0 - pi[:, 0])


def test_batched_shape_and_float32_precision():
    gen = torch.Generator().manual_seed(3)
    pi = torch.rand(4, 7, 5, generator=gen)  # [B, T, N]
    f = joint_action_term(pi)
    assert f.shape == (4, 7)
    expected = joint_action_term(pi.double())
    assert torch.allclose(f.double(), expected, atol=1e-6)


def test_no_division_by_pi_underflow():
    """The reference code divides by π_i; with π_i = 0 that is 0/0. Ours stays exact."""
    n = 64
    pi = torch.full((3, n), 0.999)
    pi[0, 5] = 0.0  # one underflowed probability
    pi[1, :] = 1e-30  # all tiny: products underflow in float32
    pi[2, 10] = 1e-45  # float32 subnormal
    f = joint_action_term(pi)
    assert torch.isfinite(f).all()
    assert f[0].item() == pytest.approx(1.0 + 0.999**63, rel=1e-5)
    assert f[1].item() == pytest.approx(1.0)
    assert f[2].item() == pytest.approx(1.0 + 0.999**63, rel=1e-5)


def test_empty_agent_dimension_is_an_error():
    with pytest.raises(ValueError, match="at least one agent"):
        joint_action_term(torch.ones(3, 0))


# ---- the three-level approximation ---------------------------------------------------------


def test_approx_three_classes_at_the_cut_points():
    f = torch.tensor([1.0, 1.2499, 1.25, 1.4999, 1.5, 2.0], dtype=torch.float64)
    got = joint_action_level(f, levels=(0.1, 0.2, 0.3), cut_points=(0.25, 0.5))
    assert got.tolist() == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])


def test_approx_default_levels_on_theorem2_cases():
    # rows: consensus (all certain), Theorem 2 maximiser, two deviations, one moderate deviation
    pi = torch.tensor(
        [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.5, 1.0, 1.0]], dtype=torch.float64
    )
    f = joint_action_term(pi)
    assert joint_action_level(f).tolist() == [0.25, 0.75, 0.25, 0.5]


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_approx_preserves_order_of_exact_f(n):
    cases = [
        [1.0] * n,  # consensus
        [0.0] + [1.0] * (n - 1),  # Theorem 2 maximiser
        [0.0, 0.0] + [1.0] * (n - 2),  # two agents deviate
        [0.05] + [0.95] * (n - 1),  # near-maximiser
        [0.95] * n,  # near-consensus
        [0.5] * n,  # undecided
        [0.5] + [1.0] * (n - 1),
    ]
    gen = torch.Generator().manual_seed(n)
    pi = torch.cat([torch.tensor(cases, dtype=torch.float64), random_pis(n, gen, 200)])
    f = joint_action_term(pi)
    level = joint_action_level(f)
    higher = f[:, None] > f[None, :]  # [K, K]
    assert (level[:, None] >= level[None, :])[higher].all()
    assert level[1] == 0.75 and level[0] == 0.25 and level[2] == 0.25


def test_approx_ranks_single_deviation_above_consensus_with_eight_agents():
    """docs/design.md: a count-of-unlikely-agents rule misorders these; the f-based rule must not."""
    single_deviation = [0.05] + [0.95] * 7
    consensus = [0.95] * 8
    f = joint_action_term(torch.tensor([single_deviation, consensus], dtype=torch.float64))
    assert f[0] > f[1]
    level = joint_action_level(f)
    assert level[0] > level[1]


@pytest.mark.parametrize(
    ("levels", "cut_points", "option"),
    [
        ((0.75, 0.5, 0.25), (1 / 3, 2 / 3), "sampler.levels"),
        ((0.25, 0.5), (1 / 3, 2 / 3), "sampler.levels"),
        ((0.0, 0.5, 0.75), (1 / 3, 2 / 3), "sampler.levels"),
        ((0.25, 0.5, 0.75), (2 / 3, 1 / 3), "sampler.cut_points"),
        ((0.25, 0.5, 0.75), (0.5, 1.5), "sampler.cut_points"),
        ((0.25, 0.5, 0.75), (0.5,), "sampler.cut_points"),
    ],
)
def test_invalid_levels_raise(levels, cut_points, option):
    with pytest.raises(ValueError, match=option):
        joint_action_level(torch.ones(2), levels=levels, cut_points=cut_points)
