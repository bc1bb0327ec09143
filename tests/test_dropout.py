"""mt.models.dropout: the CPU dropout's mask statistics, scaling, gradient and modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mt.models.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_every_lane_drops_at_the_rate_asked(p: float) -> None:
    """Four elements share one 64-bit draw: each of the four positions must drop at rate p (a lane
    with a constant bit, e.g. the sign bit of a non-negative draw, would not)."""
    torch.manual_seed(0)
    n = 400_000
    mask = keep_mask((n,), p, torch.float32, torch.device("cpu"))
    dropped = (mask == 0).float().view(-1, 4).mean(dim=0)  # (4,): the rate of each lane
    # 100k draws per lane: the standard error is under 0.0016.
    torch.testing.assert_close(dropped, torch.full((4,), p), atol=0.008, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_elements_are_scaled_and_the_gradient_is_the_mask(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    layer = Dropout(0.1).train()
    # 2079 elements: not a multiple of 4, so the last 64-bit draw is used in part.
    x = torch.randn(63, 33, dtype=dtype, requires_grad=True)
    y = layer(x)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    scale = 65536 / (65536 - round(0.1 * 65536))
    torch.testing.assert_close(y[kept], (x[kept].float() * scale).to(dtype))
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (kept * torch.tensor(scale, dtype=dtype)).to(dtype))
    assert 0.05 < (~kept).float().mean() < 0.15


def test_the_mean_is_preserved() -> None:
    torch.manual_seed(2)
    x = torch.ones(1_000_000)
    assert abs(Dropout(0.2).train()(x).mean().item() - 1.0) < 0.005


def test_evaluation_mode_and_p_zero_are_the_identity_and_p_one_drops_all() -> None:
    x = torch.randn(10, 10)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1e-6).train()(x), x)  # rounds to no dropout at 1/65536 steps
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert Dropout(0.5).train()(torch.empty(0, 7)).shape == (0, 7)


def test_reproducible_under_the_seed_and_different_between_draws() -> None:
    layer = Dropout(0.3).train()
    x = torch.ones(1000)
    torch.manual_seed(5)
    a, b = layer(x), layer(x)
    torch.manual_seed(5)
    assert torch.equal(layer(x), a)
    assert not torch.equal(a, b)


def test_is_an_nn_dropout_for_state_dicts_and_repr() -> None:
    layer = Dropout(0.1)
    assert isinstance(layer, nn.Dropout) and layer.state_dict() == {}
    assert repr(layer) == "Dropout(p=0.1, inplace=False)"
