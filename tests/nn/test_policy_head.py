"""Log-probabilities and entropies of stochastic policies."""

import pytest
import torch

from macpo.nn.policy_head import categorical_entropy, taken_log_probs


def test_taken_log_probs_mask_padding_and_entropy():
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    lp = taken_log_probs(probs, torch.tensor([0, 0]), mask=torch.tensor([1.0, 0.0]))
    assert lp.tolist() == pytest.approx([torch.log(torch.tensor(0.5)).item(), 0.0])
    assert categorical_entropy(probs).tolist() == pytest.approx([torch.log(torch.tensor(2.0)).item(), 0.0])
