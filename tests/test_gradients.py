"""Analytic gradients of fastnn.ops (and fastnn.reference) equal central finite
differences in float64.

Each check differentiates a scalar L: for an op y = f(x) it is L = sum(g * f(x)) with a
fixed random g, so every output component is weighted differently; the analytic
gradient is the op's backward applied to g.

Tolerance, from the arithmetic: L is computed with a rounding error of about
eps * S, where S is the size of the terms summed into L, so the central difference
(L(x+h) - L(x-h)) / 2h carries ~eps * S / h of rounding error and ~h^2 |L'''| / 6 of
truncation error.  With h = 1e-6 and inputs of order 1 (|L'''| <~ S) this is
~2e-10 * S + 2e-13 * S; we allow 100 times the rounding term plus S * h^2.  A wrong
gradient (a missing factor, a wrong sign, a dropped term) is off by O(|grad|), which
is orders of magnitude above that.
"""
import numpy as np
import pytest

from conftest import away_from_zero, labels, normal, probabilities, uniform

H = 1e-6
EPS64 = np.finfo(np.float64).eps


def numerical_gradient(f, x, h=H):
    """dL/dx by central differences, one element at a time."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (f(xp) - f(xm)) / (2 * h)
    return grad


def assert_gradient(analytic, numeric, scale):
    """|analytic - numeric| <= 100 eps S / h + S h^2 (see the module docstring)."""
    analytic = np.asarray(analytic)
    assert analytic.shape == numeric.shape
    assert analytic.dtype == np.float64
    tol = 100 * EPS64 * scale / H + scale * H ** 2
    err = np.max(np.abs(analytic - numeric), initial=0.0)
    assert err <= tol, f"gradient off by {err:.3g} (tolerance {tol:.3g})\n{analytic}\n{numeric}"
    # the check must be able to fail: the gradient is not trivially zero
    assert np.max(np.abs(numeric)) > 1000 * tol or np.all(analytic == 0)


def weighted_sum(y, g):
    return float(np.sum(g * y))


def magnitude(*arrays):
    """S: the size of the terms of L = sum(g * y), bounded by sum |g| * max|y| etc."""
    return float(sum(np.sum(np.abs(a)) for a in arrays)) + 1.0


F64 = np.float64


@pytest.mark.parametrize("shape", [(1, 4), (3, 5)])
def test_sigmoid_gradient(mod, shape):
    x = normal(shape, F64, "gs-x", shape, scale=2.0)
    g = normal(shape, F64, "gs-g", shape)
    analytic = mod.sigmoid_backward(mod.sigmoid(x), g)
    numeric = numerical_gradient(lambda v: weighted_sum(mod.sigmoid(v), g), x)
    assert_gradient(analytic, numeric, magnitude(g))


@pytest.mark.parametrize("shape", [(1, 4), (3, 5)])
def test_tanh_gradient(mod, shape):
    x = normal(shape, F64, "gt-x", shape)
    g = normal(shape, F64, "gt-g", shape)
    analytic = mod.tanh_backward(mod.tanh(x), g)
    numeric = numerical_gradient(lambda v: weighted_sum(mod.tanh(v), g), x)
    assert_gradient(analytic, numeric, magnitude(g))


@pytest.mark.parametrize("shape", [(1, 4), (3, 5)])
def test_relu_gradient(mod, shape):
    # |x| >= 0.1 >> h: no finite difference straddles the kink at 0
    x = away_from_zero(shape, F64, "gr-x", shape, gap=0.1)
    assert np.any(x > 0) and np.any(x < 0)
    g = normal(shape, F64, "gr-g", shape)
    analytic = mod.relu_backward(x, g)
    numeric = numerical_gradient(lambda v: weighted_sum(mod.relu(v), g), x)
    assert_gradient(analytic, numeric, magnitude(g) * (1 + np.abs(x).max()))


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradient(mod, n, bias):
    n_in, n_out = 3, 5
    x = normal((n, n_in), F64, "gl-x", n)
    w = normal((n_in, n_out), F64, "gl-w", n)
    b = normal((n_out,), F64, "gl-b", n) if bias else None
    g = normal((n, n_out), F64, "gl-g", n)
    dx, dw, db = mod.linear_backward(x, w, g)
    scale = magnitude(g) * (1 + np.abs(x).max()) * (1 + np.abs(w).max())
    assert_gradient(dx, numerical_gradient(lambda v: weighted_sum(mod.linear_forward(v, w, b), g), x), scale)
    assert_gradient(dw, numerical_gradient(lambda v: weighted_sum(mod.linear_forward(x, v, b), g), w), scale)
    if bias:
        assert_gradient(db, numerical_gradient(lambda v: weighted_sum(mod.linear_forward(x, w, v), g), b),
                        scale)
    else:
        np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-12)


def _ce_scale(z, t):
    k = z.shape[1]
    tsum = np.abs(t).sum(axis=1).max() if t.ndim == 2 else 1.0
    return float((np.abs(z).max() + np.log(k)) * max(1.0, tsum)) + 1.0


@pytest.mark.parametrize("n", [1, 5])
def test_cross_entropy_gradient_index_target(mod, n):
    z = normal((n, 4), F64, "gce-z", n, scale=2.0)
    y = labels(n, 4, "gce-y", n)
    loss, dz = mod.cross_entropy(z, y)
    numeric = numerical_gradient(lambda v: mod.cross_entropy(v, y)[0], z)
    assert_gradient(dz, numeric, _ce_scale(z, y))


@pytest.mark.parametrize("kind", ["probabilities", "one-hot", "weights"])
@pytest.mark.parametrize("n", [1, 5])
def test_cross_entropy_gradient_probability_target(mod, n, kind):
    z = normal((n, 4), F64, "gcp-z", n, kind, scale=2.0)
    if kind == "probabilities":
        t = probabilities((n, 4), F64, "gcp-t", n)
    elif kind == "one-hot":
        t = np.eye(4)[labels(n, 4, "gcp-y", n)]
    else:   # rows not summing to 1: dlogits = (softmax * sum t - t) / n is still exact
        t = uniform((n, 4), F64, "gcp-w", n, low=0.0, high=2.0)
    loss, dz = mod.cross_entropy(z, t)
    numeric = numerical_gradient(lambda v: mod.cross_entropy(v, t)[0], z)
    assert_gradient(dz, numeric, _ce_scale(z, t))


@pytest.mark.parametrize("n", [1, 3, 6])   # (n = 2 makes x_hat = +-1 whatever x is)
def test_batchnorm_gradient(mod, n):
    d, eps = 3, 1e-5
    x = normal((n, d), F64, "gbn-x", n, scale=2.0, shift=0.5)
    gamma = normal((d,), F64, "gbn-gamma", n, shift=1.0)
    beta = normal((d,), F64, "gbn-beta", n)
    g = normal((n, d), F64, "gbn-g", n)

    def L(x_, gamma_, beta_):
        return weighted_sum(mod.batchnorm_forward(x_, gamma_, beta_, eps)[0], g)

    _, cache = mod.batchnorm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = mod.batchnorm_backward(g, cache)
    # L's terms are |g| (|gamma| |x_hat| + |beta|), and x_hat = (x - mean) * inv_std
    # itself carries rounding of size (|x| + |mean|) * inv_std.
    x_hat, inv_std = np.abs(cache[0]).max(), np.asarray(cache[3]).max()
    scale = float(np.abs(g).sum() * (np.abs(gamma).max() * (x_hat + 2 * np.abs(x).max() * inv_std)
                                     + np.abs(beta).max()))
    assert_gradient(dx, numerical_gradient(lambda v: L(v, gamma, beta), x), scale)
    assert_gradient(dgamma, numerical_gradient(lambda v: L(x, v, beta), gamma), scale)
    assert_gradient(dbeta, numerical_gradient(lambda v: L(x, gamma, v), beta), scale)
    if n == 1:   # one row: y = beta whatever x is
        np.testing.assert_array_equal(dx, 0)
