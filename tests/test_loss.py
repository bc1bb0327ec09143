"""mt.models.loss: the chunked label-smoothed cross-entropy against PyTorch's own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mt.models.loss as loss_module
from mt.models.loss import smoothed_cross_entropy

PAD = 0


def reference(logits: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's float32 cross-entropy, summed over the rows whose target is not PAD."""
    x = logits.float()
    loss = F.cross_entropy(x, target, ignore_index=PAD, label_smoothing=eps, reduction="sum")
    nll = F.cross_entropy(x, target, ignore_index=PAD, reduction="sum")
    return loss, nll


def example(rows: int = 37, vocab: int = 50, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    logits = (3 * torch.randn(rows, vocab)).to(dtype)
    target = torch.randint(1, vocab, (rows,))
    target[::5] = PAD
    return logits, target


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 rows of 50 classes: 37 rows make 9 full chunks and a partial one."""
    monkeypatch.setattr(loss_module, "CHUNK_BYTES", 4 * 50 * 4)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_values_and_gradients_match_pytorch_cross_entropy(small_chunks: None, eps: float) -> None:
    logits, target = example()
    x_ref = logits.clone().requires_grad_()
    x = logits.clone().requires_grad_()
    loss_ref, nll_ref = reference(x_ref, target, eps)
    loss, nll = smoothed_cross_entropy(x, target, eps, PAD)
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(nll, nll_ref)
    # Both outputs carry gradients, with different weights.
    (2 * loss_ref + 3 * nll_ref).backward()
    (2 * loss + 3 * nll).backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    assert x.grad[target == PAD].abs().max() == 0


def test_one_chunk_and_many_chunks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    logits, target = example()
    results = []
    for chunk_bytes in (1 << 30, 3 * 50 * 4):  # all rows at once; 3 rows a chunk
        monkeypatch.setattr(loss_module, "CHUNK_BYTES", chunk_bytes)
        x = logits.clone().requires_grad_()
        loss, _ = smoothed_cross_entropy(x, target, 0.1, PAD)
        loss.backward()
        results.append((loss, x.grad))
    torch.testing.assert_close(results[0], results[1])


def test_bf16_logits_give_a_float32_loss_and_a_bf16_gradient(small_chunks: None) -> None:
    logits, target = example(dtype=torch.bfloat16)
    x = logits.clone().requires_grad_()
    loss, nll = smoothed_cross_entropy(x, target, 0.1, PAD)
    assert loss.dtype == nll.dtype == torch.float32
    # The same bf16 values in float32: the loss is computed in float32, not in bf16.
    x_ref = logits.float().requires_grad_()
    loss_ref, nll_ref = reference(x_ref, target, 0.1)
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(nll, nll_ref)
    loss.backward()
    loss_ref.backward()
    assert x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x.grad, x_ref.grad.bfloat16())


def test_another_ignore_index_and_non_contiguous_logits(small_chunks: None) -> None:
    """ignore_index -100 (PyTorch's default) and logits that are a transposed view."""
    logits, target = example()
    target = target.masked_fill(target == PAD, -100)
    x_ref = logits.clone().requires_grad_()
    base = logits.t().contiguous().requires_grad_()  # (V, N)
    x = base.t()  # (N, V), not contiguous
    assert not x.is_contiguous()
    loss_ref = F.cross_entropy(x_ref, target, label_smoothing=0.1, reduction="sum")
    loss, _ = smoothed_cross_entropy(x, target, 0.1, -100)
    torch.testing.assert_close(loss, loss_ref)
    loss_ref.backward()
    loss.backward()
    torch.testing.assert_close(base.grad.t(), x_ref.grad)


def test_only_padding_gives_zero_loss_and_gradient() -> None:
    logits, _ = example()
    target = torch.full((logits.size(0),), PAD)
    x = logits.clone().requires_grad_()
    loss, nll = smoothed_cross_entropy(x, target, 0.1, PAD)
    loss.backward()
    assert loss.item() == nll.item() == 0.0
    assert x.grad.abs().max() == 0


def test_shapes_are_checked() -> None:
    logits, target = example()
    with pytest.raises(ValueError, match=r"logits \(N, V\) and target \(N,\)"):
        smoothed_cross_entropy(logits[None], target, 0.1, PAD)
    with pytest.raises(ValueError, match=r"logits \(N, V\) and target \(N,\)"):
        smoothed_cross_entropy(logits, target[:-1], 0.1, PAD)
