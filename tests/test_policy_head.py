"""Stochastic decentralised policies: the ε-floor over available actions."""

import pytest
import torch

from macpo.nn.policy_head import categorical_entropy, policy_probs, taken_log_probs


def test_epsilon_floor_mixes_softmax_with_uniform_over_available_actions():
    logits = torch.tensor([[0.0, 0.0, 5.0, 1.0]])
    avail = torch.tensor([[True, True, False, True]])
    p = policy_probs(logits, avail, epsilon=0.3)
    soft = torch.softmax(torch.tensor([0.0, 0.0, 1.0]), -1)
    want = 0.7 * soft + 0.3 / 3
    assert torch.allclose(p[0, [0, 1, 3]], want) and p[0, 2] == 0
    assert torch.allclose(policy_probs(logits, avail, 1.0)[0], torch.tensor([1 / 3, 1 / 3, 0, 1 / 3]))


def test_rows_without_available_actions_stay_finite():
    p = policy_probs(torch.randn(2, 3), torch.tensor([[False] * 3, [True, False, False]]), 0.1)
    assert torch.isfinite(p).all() and torch.allclose(p.sum(-1), torch.ones(2))
    assert p[1].tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_taken_log_probs_mask_padding_and_entropy():
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    lp = taken_log_probs(probs, torch.tensor([0, 0]), mask=torch.tensor([1.0, 0.0]))
    assert lp.tolist() == pytest.approx([torch.log(torch.tensor(0.5)).item(), 0.0])
    assert categorical_entropy(probs).tolist() == pytest.approx([torch.log(torch.tensor(2.0)).item(), 0.0])
