"""FusedGRU: same results and gradients as nn.GRU, interchangeable weights, the RNN agent's paths."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from macpo.nn.agent import RNNAgent
from macpo.nn.fused_gru import FusedGRU
from macpo.nn.kernels import gru as fused_gru
from macpo.nn.kernels import matmul as fast_linear
from macpo.nn.kernels.gru import packed_gru

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(params=["onednn", "addmm"])
def matmul_path(request, monkeypatch):
    """Both matmul back-ends: oneDNN (where this PyTorch has it) and plain addmm."""
    if request.param == "onednn" and not fast_linear.USE_ONEDNN:
        pytest.skip("this PyTorch build has no oneDNN")
    monkeypatch.setattr(fast_linear, "USE_ONEDNN", request.param == "onednn")
    monkeypatch.setattr(fast_linear, "ONEDNN_MIN_ROWS", 1)  # tiny test sizes take the fast path too
    return request.param


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few steps, so tiny sequences still cross chunk boundaries."""
    monkeypatch.setattr(fused_gru, "ROWS_PER_CHUNK", 8)


def pair(i: int, h: int, dtype=torch.float32, **kwargs) -> tuple[nn.GRU, FusedGRU]:
    ref = nn.GRU(i, h, **kwargs).to(dtype)
    fused = FusedGRU(i, h, **kwargs).to(dtype)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def outputs_and_grads(gru: nn.Module, x: torch.Tensor, h0: torch.Tensor | None, weights: torch.Tensor):
    """Output, h_n and the gradients of a loss that weights every output and h_n differently."""
    x = x.detach().requires_grad_(True)
    leaves = [x, *gru.parameters()]
    if h0 is not None:
        h0 = h0.detach().requires_grad_(True)
        leaves.append(h0)
    out, h_n = gru(x, h0)
    loss = (out * weights).sum() + (h_n * h_n).sum()
    return [out.detach(), h_n.detach(), *torch.autograd.grad(loss, leaves)]


def assert_all_close(got, want, atol=1e-5):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"item {k}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        torch.testing.assert_close(g, w, atol=atol, rtol=1e-4, msg=lambda m, k=k: f"item {k}: {m}")


@pytest.mark.parametrize("with_h0", [True, False])
def test_outputs_and_all_gradients_equal_nn_gru(matmul_path, small_chunks, with_h0):
    torch.manual_seed(0)
    ref, fused = pair(5, 7)
    x = torch.randn(11, 3, 5)  # T = 11 over chunks of 2 steps (8 rows // 3 sequences)
    h0 = torch.randn(1, 3, 7) if with_h0 else None
    w = torch.randn(11, 3, 7)
    assert_all_close(outputs_and_grads(fused, x, h0, w), outputs_and_grads(ref, x, h0, w))


def test_gradcheck_float64():
    torch.manual_seed(1)
    x = torch.randn(4 * 2, 3, dtype=torch.float64, requires_grad=True)  # 4 steps of 2 sequences
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    params = [p.detach().requires_grad_(True) for p in nn.GRU(3, 4).double().parameters()]
    assert torch.autograd.gradcheck(lambda x, h0, *w: packed_gru(x, h0, [2] * 4, *w), (x, h0, *params))


def test_several_batch_dims_with_strides_equal_flat_nn_gru(matmul_path, small_chunks):
    """x [T, B, N, I] given as a transposed view of [B, T, N, I] (the agent's layout)."""
    torch.manual_seed(2)
    ref, fused = pair(4, 6)
    b, t, n = 3, 5, 2
    x_btn = torch.randn(b, t, n, 4)
    h0 = torch.randn(1, b * n, 6)
    w = torch.randn(t, b, n, 6)
    got = outputs_and_grads(fused, x_btn.transpose(0, 1), h0, w)
    x_flat = x_btn.transpose(0, 1).reshape(t, b * n, 4)
    want = outputs_and_grads(ref, x_flat, h0, w.reshape(t, b * n, 6))
    want[0] = want[0].view(t, b, n, 6)
    want[2] = want[2].view(t, b, n, 4)  # ∂x
    assert_all_close(got, want)
    out, _ = fused(x_btn.transpose(0, 1), h0)
    assert out.transpose(0, 1).is_contiguous()  # laid out like the input: no copy for the agent's fc2


def test_batch_first_equals_nn_gru(matmul_path):
    torch.manual_seed(3)
    ref, fused = pair(3, 5, batch_first=True)
    x, h0, w = torch.randn(4, 6, 3), torch.randn(1, 4, 5), torch.randn(4, 6, 5)
    assert_all_close(outputs_and_grads(fused, x, h0, w), outputs_and_grads(ref, x, h0, w))


def test_no_grad_forward_equals_training_forward(matmul_path, small_chunks):
    torch.manual_seed(4)
    _, fused = pair(3, 4)
    x, h0 = torch.randn(9, 2, 3), torch.randn(1, 2, 4)
    out, h_n = fused(x, h0)
    assert out.requires_grad
    with torch.no_grad():
        out_ng, h_n_ng = fused(x, h0)
    torch.testing.assert_close(out_ng, out.detach(), atol=0, rtol=0)
    torch.testing.assert_close(h_n_ng, h_n.detach(), atol=0, rtol=0)


def test_same_initialisation_and_state_dict_as_nn_gru():
    torch.manual_seed(5)
    ref = nn.GRU(7, 9)
    torch.manual_seed(5)
    fused = FusedGRU(7, 9)
    assert list(fused.state_dict()) == list(ref.state_dict())
    for (name, a), b in zip(fused.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name
    nn.GRU(7, 9).load_state_dict(fused.state_dict())  # and back: checkpoints are interchangeable


def test_two_forwards_before_backward():
    torch.manual_seed(7)
    ref, fused = pair(3, 4)
    x1, x2 = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    loss = fused(x1)[0].pow(2).sum() + fused(x2)[0].sin().sum()
    got = torch.autograd.grad(loss, list(fused.parameters()))
    loss_ref = ref(x1)[0].pow(2).sum() + ref(x2)[0].sin().sum()
    want = torch.autograd.grad(loss_ref, list(ref.parameters()))
    assert_all_close(list(got), list(want))


def test_retain_graph_backward_twice_gives_the_same_gradients():
    _, fused = pair(3, 4)
    loss = fused(torch.randn(4, 2, 3))[0].pow(2).sum()
    first = torch.autograd.grad(loss, list(fused.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(fused.parameters()))
    assert_all_close(list(second), list(first), atol=0)


def test_uses_onednn_on_cpu_float32(monkeypatch):
    if not fast_linear.USE_ONEDNN:
        pytest.skip("this PyTorch build has no oneDNN")
    calls = []
    real = fused_gru._linear

    def counting(x, w, b):
        calls.append(fast_linear._fast_path(x))
        return real(x, w, b)

    monkeypatch.setattr(fused_gru, "_linear", counting)
    _, fused = pair(3, 4)
    fused(torch.randn(3, fast_linear.ONEDNN_MIN_ROWS, 3))
    assert calls and all(calls)
    calls.clear()
    fused(torch.randn(3, 2, 3))  # a few rows: plain addmm is faster
    assert calls and not any(calls)


def test_configurations_it_does_not_cover_run_nn_gru():
    torch.manual_seed(8)
    ref, fused = pair(3, 4, num_layers=2)
    assert not fused.fused_applies(torch.randn(5, 2, 3))
    x, w = torch.randn(5, 2, 3), torch.randn(5, 2, 4)
    assert_all_close(outputs_and_grads(fused, x, None, w), outputs_and_grads(ref, x, None, w))


def test_several_batch_dims_on_the_nn_gru_path(monkeypatch):
    """What CUDA runs: [T, B, N, I] flattened for nn.GRU (cuDNN) and unflattened back."""
    torch.manual_seed(14)
    _, fused = pair(4, 6)
    x, h0, w = torch.randn(2, 5, 3, 4).transpose(0, 1), torch.randn(1, 6, 6), torch.randn(5, 2, 3, 6)
    want = outputs_and_grads(fused, x, h0, w)
    monkeypatch.setattr(FusedGRU, "fused_applies", lambda self, x: False)
    assert_all_close(outputs_and_grads(fused, x, h0, w), want)


def test_bad_shapes_raise_value_errors():
    _, fused = pair(3, 4)
    with pytest.raises(ValueError, match="input_size=3"):
        fused(torch.randn(5, 2, 6))
    with pytest.raises(ValueError, match="hx"):
        fused(torch.randn(5, 2, 3), torch.zeros(1, 3, 4))


@CUDA
def test_cuda_equals_nn_gru():
    torch.manual_seed(9)
    ref, fused = pair(5, 7)
    ref, fused = ref.cuda(), fused.cuda()
    x, h0, w = torch.randn(6, 3, 5).cuda(), torch.randn(1, 3, 7).cuda(), torch.randn(6, 3, 7).cuda()
    assert_all_close(outputs_and_grads(fused, x, h0, w), outputs_and_grads(ref, x, h0, w), atol=1e-4)


def agent_with_nn_gru(agent: RNNAgent) -> nn.Module:
    """The agent as it was before FusedGRU: fc1 → ReLU → batch-first nn.GRU → fc2, same weights."""

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = copy.deepcopy(agent.fc1)
            self.rnn = nn.GRU(agent.hidden_dim, agent.hidden_dim, batch_first=True)
            self.rnn.load_state_dict(agent.rnn.state_dict())
            self.fc2 = copy.deepcopy(agent.fc2)

        def forward(self, inputs, hidden=None):
            b, t, n, i = inputs.shape
            x = torch.relu(self.fc1(inputs.transpose(1, 2).reshape(b * n, t, i)))  # [B*N, T, H]
            h_seq, h_last = self.rnn(x, hidden)
            return self.fc2(h_seq).view(b, n, t, -1).transpose(1, 2), h_last  # [B, T, N, A]

    return Reference()


def test_agent_equals_nn_gru_agent_outputs_and_gradients(small_chunks):
    torch.manual_seed(10)
    agent = RNNAgent(input_dim=6, n_actions=4, hidden_dim=8)
    ref = agent_with_nn_gru(agent)
    inputs, hidden, w = torch.randn(3, 7, 2, 6), torch.randn(1, 3 * 2, 8), torch.randn(3, 7, 2, 4)
    assert [n for n, _ in agent.named_parameters()] == [n for n, _ in ref.named_parameters()]
    results = []
    for net in (agent, ref):
        q, h = net(inputs, hidden)
        loss = (q * w).sum() + h.pow(2).sum()
        results.append([q.detach(), h.detach(), *torch.autograd.grad(loss, list(net.parameters()))])
    assert_all_close(*results)


def test_acting_one_step_at_a_time_equals_full_sequence():
    torch.manual_seed(11)
    agent = RNNAgent(input_dim=6, n_actions=4, hidden_dim=8)
    inputs = torch.randn(3, 9, 2, 6)  # [B, T, N, I]
    with torch.no_grad():
        q_full, h_full = agent(inputs)
        hidden, q_steps = None, []
        for t in range(inputs.shape[1]):
            q_t, hidden = agent(inputs[:, t : t + 1], hidden)  # [B, 1, N, A], [1, B*N, H]
            q_steps.append(q_t)
    torch.testing.assert_close(torch.cat(q_steps, dim=1), q_full, atol=1e-6, rtol=0)
    torch.testing.assert_close(hidden, h_full, atol=1e-6, rtol=0)


@CUDA
def test_agent_runs_on_cuda():
    torch.manual_seed(12)
    agent = RNNAgent(input_dim=6, n_actions=4, hidden_dim=8)
    inputs = torch.randn(3, 5, 2, 6)
    q_cpu, _ = agent(inputs)
    q_gpu, h_gpu = agent.cuda()(inputs.cuda())
    assert h_gpu.shape == (1, 6, 8)
    torch.testing.assert_close(q_gpu.cpu(), q_cpu.detach(), atol=1e-4, rtol=1e-4)
