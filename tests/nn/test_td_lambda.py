"""TD(λ) targets against a brute-force mixture of n-step returns."""

import pytest
import torch

from tests.helpers import brute_force_lambda_return, td_lambda_targets


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("terminated", [True, False])
def test_matches_brute_force(lam, terminated):
    torch.manual_seed(0)
    T, L, gamma = 7, 5, 0.9  # 5 real transitions, 2 padding steps
    r = torch.randn(1, T)
    v = torch.randn(1, T + 1)
    mask = torch.zeros(1, T)
    mask[0, :L] = 1
    term = torch.zeros(1, T)
    if terminated:
        term[0, L - 1] = 1
    got = td_lambda_targets(r, term, mask, v, gamma, lam)[0, :L]
    want = brute_force_lambda_return(r[0].tolist(), v[0].tolist(), L, terminated, gamma, lam)
    assert torch.allclose(got, torch.tensor(want), atol=1e-5)


def test_lambda_zero_is_one_step_and_one_is_monte_carlo():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    mask = torch.ones(1, 3)
    term = torch.tensor([[0.0, 0.0, 1.0]])
    one_step = td_lambda_targets(r, term, mask, v, 0.5, 0.0)
    assert torch.allclose(one_step, torch.tensor([[1 + 0.5 * 20, 2 + 0.5 * 30, 3.0]]))
    mc = td_lambda_targets(r, term, mask, v, 0.5, 1.0)
    assert torch.allclose(mc, torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]]))
