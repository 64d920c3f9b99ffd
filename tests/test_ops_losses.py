"""The elementwise losses of the kernel layer (mse_loss, binary_cross_entropy_with_logits):
ops against reference, finite-difference gradients, extreme logits, bad input."""
import numpy as np
import pytest

from conftest import as_layout, assert_close, assert_close_float, normal, uniform

LOSSES = ["mse_loss", "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (300, 131)])
def test_ops_equal_reference(ops, ref, name, shape, dtype, layout):
    z = normal(shape, dtype, name, shape, "z", scale=3.0)
    t = uniform(shape, dtype, name, shape, "t")
    loss, grad = getattr(ops, name)(as_layout(z, layout), as_layout(t, layout))
    loss_ref, grad_ref = getattr(ref, name)(z, t)
    # each loss term is at most |z|^2 or |z| + log 2: the mean's rounding scales with them
    assert_close_float(loss, loss_ref, dtype=dtype, scale=float(np.mean(z.astype(float) ** 2) + 1))
    assert_close(grad, grad_ref, scale=np.max(np.abs(grad_ref)))


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_matches_finite_differences(mod, name):
    z = normal((5, 3), np.float64, "fd", name, scale=2.0)
    t = uniform((5, 3), np.float64, "fd-t", name)
    _loss, grad = getattr(mod, name)(z, t)
    h = 1e-6
    numeric = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        numeric[idx] = (getattr(mod, name)(zp, t)[0] - getattr(mod, name)(zm, t)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_bce_is_finite_at_extreme_logits(mod):
    z = np.array([[1e4, -1e4, 0.0]])
    t = np.array([[0.0, 1.0, 0.5]])
    with np.errstate(all="raise"):
        loss, grad = mod.binary_cross_entropy_with_logits(z, t)
    # log(1 + exp(1e4)) - 0 = 1e4 for both extremes, log 2 for the middle
    assert loss == pytest.approx((1e4 + 1e4 + np.log(2)) / 3, rel=1e-12)
    np.testing.assert_allclose(grad, [[1 / 3, -1 / 3, 0.0]], atol=1e-15)


@pytest.mark.parametrize("name", LOSSES)
def test_bad_input_raises(mod, name):
    f = getattr(mod, name)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="empty"):
        f(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="NaN"):
        f(np.zeros((1, 2)), np.array([[0.0, np.nan]]))
