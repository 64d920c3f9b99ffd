"""Extreme inputs, with NumPy floating-point errors raised and warnings turned into
errors, on both fastnn.ops and fastnn.reference; and the statistics and determinism
of dropout."""
import warnings

import numpy as np
import pytest

from conftest import DTYPES, normal


@pytest.fixture(autouse=True)
def strict_floats():
    """Every overflow, invalid operation, division by zero or underflow in NumPy raises,
    and every warning is an error."""
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture(params=DTYPES, ids=lambda d: d.name)
def dt(request):
    return request.param


def test_sigmoid_extremes(mod, dt):
    y = mod.sigmoid(np.array([-1000.0, 1000.0, -1e30, 1e30, 0.0], dtype=dt))
    assert y.dtype == dt
    assert y[0] == 0.0 and y[1] == 1.0 and y[2] == 0.0 and y[3] == 1.0
    assert y[4] == 0.5


def test_sigmoid_is_accurate_in_the_tails(mod):
    # sigmoid(-40) = exp(-40) / (1 + exp(-40)): a naive 1 - sigmoid(40) would give 0.
    x = np.array([-40.0, -700.0])
    y = mod.sigmoid(x)
    with np.errstate(under="ignore"):       # assert_allclose's own rtol * 1e-304
        np.testing.assert_allclose(y, np.exp(x) / (1 + np.exp(x)), rtol=1e-14)


def test_tanh_relu_extremes(mod, dt):
    x = np.array([-1000.0, 1000.0, -1e30, 1e30], dtype=dt)
    np.testing.assert_array_equal(mod.tanh(x), np.array([-1, 1, -1, 1], dtype=dt))
    np.testing.assert_array_equal(mod.relu(x), np.array([0, 1000, 0, 1e30], dtype=dt))


def test_relu_and_its_gradient_at_zero(mod, dt):
    x = np.array([[-1.0, -0.0, 0.0, 1e-30, 2.0]], dtype=dt)
    np.testing.assert_array_equal(mod.relu(x), np.array([[0, 0, 0, 1e-30, 2]], dtype=dt))
    np.testing.assert_array_equal(mod.relu_backward(x, np.full_like(x, 3.0)),
                                  np.array([[0, 0, 0, 3, 3]], dtype=dt))


def test_softmax_of_far_apart_logits(mod, dt):
    p = mod.softmax(np.array([[1000.0, 0.0, -1000.0]], dtype=dt))
    assert p.dtype == dt
    assert np.all(np.isfinite(p))
    assert p.sum() == pytest.approx(1.0, abs=4 * float(np.finfo(dt).eps))
    np.testing.assert_array_equal(p, np.array([[1.0, 0.0, 0.0]], dtype=dt))


def test_softmax_of_all_very_negative_row_is_uniform(mod, dt):
    p = mod.softmax(np.full((2, 4), -1000.0, dtype=dt))
    np.testing.assert_array_equal(p, np.full((2, 4), 0.25, dtype=dt))
    p = mod.softmax(np.full((1, 3), 1000.0, dtype=dt))
    np.testing.assert_allclose(p, np.full((1, 3), 1 / 3), rtol=2 * np.finfo(dt).eps)


def test_log_softmax_of_far_apart_logits(mod, dt):
    out = mod.log_softmax(np.array([[0.0, -1000.0]], dtype=dt))
    assert out.dtype == dt
    np.testing.assert_array_equal(out, np.array([[0.0, -1000.0]], dtype=dt))
    out = mod.log_softmax(np.array([[1000.0, 0.0, -1000.0]], dtype=dt))
    np.testing.assert_array_equal(out, np.array([[0.0, -1000.0, -2000.0]], dtype=dt))


@pytest.mark.parametrize("target_kind", ["index", "one-hot"])
def test_cross_entropy_of_huge_logits(mod, dt, target_kind):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 1e4, -1e4]], dtype=dt)
    y = np.array([0, 0, 2])
    t = y if target_kind == "index" else np.eye(3, dtype=dt)[y]
    loss, dz = mod.cross_entropy(z, t)
    n = 3
    assert isinstance(loss, float) and np.isfinite(loss)
    # row 0 is right (loss 0), row 1 is off by 2e4, row 2 by 1e4 + 1e4
    assert loss == pytest.approx((0.0 + 2e4 + 2e4) / n, rel=4 * float(np.finfo(dt).eps))
    assert dz.dtype == dt and np.all(np.isfinite(dz))
    expected = (mod.softmax(z) - np.eye(3, dtype=dt)[y]) / n
    np.testing.assert_allclose(dz, expected, rtol=0, atol=4 * np.finfo(dt).eps / n)
    np.testing.assert_allclose(dz, np.array([[0, 0, 0], [-1, 1, 0], [0, 1, -1]]) / n,
                               rtol=0, atol=4 * np.finfo(dt).eps / n)


def test_cross_entropy_of_probability_target_with_zero_weights(mod, dt):
    # t_ik = 0 where log p_ik is hugely negative: 0 * (-2e4) must be 0, not NaN
    z = np.array([[1e4, -1e4]], dtype=dt)
    loss, dz = mod.cross_entropy(z, np.array([[1.0, 0.0]], dtype=dt))
    assert loss == 0.0
    np.testing.assert_array_equal(dz, np.zeros((1, 2), dtype=dt))


def test_batchnorm_of_constant_feature(mod, dt):
    x = np.column_stack([np.full(7, 3.7), np.arange(7.0)]).astype(dt)
    gamma = np.array([2.0, 1.0], dtype=dt)
    beta = np.array([0.5, -1.0], dtype=dt)
    y, cache = mod.batchnorm_forward(x, gamma, beta, 1e-5)
    assert np.all(np.isfinite(y))
    assert all(np.all(np.isfinite(c)) for c in cache)
    # the constant feature normalises to (almost exactly) 0, so y is beta there
    np.testing.assert_allclose(y[:, 0], 0.5, rtol=0, atol=1e-3 if dt == np.float32 else 1e-9)
    dx, dgamma, dbeta = mod.batchnorm_backward(normal((7, 2), dt, "bn-const"), cache)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dgamma)) and np.all(np.isfinite(dbeta))


def test_batchnorm_of_a_single_row(mod, dt):
    x = np.array([[1e3, -2.0, 0.0]], dtype=dt)
    y, cache = mod.batchnorm_forward(x, np.ones(3, dt), np.array([1.0, 2.0, 3.0], dtype=dt), 1e-5)
    np.testing.assert_array_equal(y, np.array([[1.0, 2.0, 3.0]], dtype=dt))
    dx, dgamma, dbeta = mod.batchnorm_backward(np.ones((1, 3), dt), cache)
    np.testing.assert_array_equal(dx, np.zeros((1, 3), dt))


def test_sigmoid_backward_at_saturation(mod, dt):
    y = mod.sigmoid(np.array([-1000.0, 1000.0], dtype=dt))
    np.testing.assert_array_equal(mod.sigmoid_backward(y, np.ones(2, dt)), np.zeros(2, dt))
    y = mod.tanh(np.array([-1000.0, 1000.0], dtype=dt))
    np.testing.assert_array_equal(mod.tanh_backward(y, np.ones(2, dt)), np.zeros(2, dt))


# --------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_the_expected_fraction(mod, dt, p):
    n = 20000
    x = normal((100, n // 100), dt, "drop", p, shift=3.0)
    y, mask = mod.dropout(x, p, 2024)
    assert y.dtype == dt and mask.dtype == dt and mask.shape == x.shape
    kept = mask != 0
    # kept count ~ Binomial(n, 1 - p): within 4 standard deviations
    assert abs(kept.mean() - (1 - p)) <= 4 * np.sqrt(p * (1 - p) / n)
    scale = dt.type(1.0 / (1.0 - p))
    np.testing.assert_array_equal(mask[kept], scale)
    np.testing.assert_array_equal(y[~kept], 0)
    np.testing.assert_allclose(y[kept], x[kept] * scale, rtol=2 * np.finfo(dt).eps)


def test_dropout_mask_is_spread_evenly(mod):
    """No pattern across positions: each of 10 column blocks keeps ~1 - p."""
    p, rows = 0.3, 2000
    _, mask = mod.dropout(np.ones((rows, 10)), p, 99)
    per_column = (mask != 0).mean(axis=0)
    assert np.all(np.abs(per_column - (1 - p)) <= 4 * np.sqrt(p * (1 - p) / rows))


def test_dropout_same_seed_same_mask(mod, dt):
    x = normal((13, 17), dt, "seed")
    y1, m1 = mod.dropout(x, 0.5, 7)
    y2, m2 = mod.dropout(x, 0.5, 7)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    # the mask depends on the seed and position, not on the values
    _, m3 = mod.dropout(x * 2 + 1, 0.5, 7)
    np.testing.assert_array_equal(m1, m3)
    # seeds are taken modulo 2**64
    np.testing.assert_array_equal(mod.dropout(x, 0.5, 7 + 2 ** 64)[1], m1)
    np.testing.assert_array_equal(mod.dropout(x, 0.5, -1)[1], mod.dropout(x, 0.5, 2 ** 64 - 1)[1])


def test_dropout_different_seed_different_mask(mod, dt):
    x = np.ones((20, 20), dtype=dt)
    masks = [mod.dropout(x, 0.5, s)[1] for s in (0, 1, 2, 12345)]
    for i in range(len(masks)):
        for j in range(i):
            assert not np.array_equal(masks[i], masks[j])
    # seed=None draws a fresh seed each call
    assert not np.array_equal(mod.dropout(x, 0.5, None)[1], mod.dropout(x, 0.5, None)[1])


def test_dropout_p_zero_is_identity(mod, dt):
    x = normal((5, 6), dt, "p0")
    y, mask = mod.dropout(x, 0.0, 3)
    assert y.dtype == dt and mask.dtype == dt
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(mask, np.ones_like(x))
    assert not np.shares_memory(y, x)          # a copy: writing to y leaves x alone


def test_dropout_p_close_to_one(mod):
    p = 1 - 2 ** -20
    x = np.ones((1000,))
    y, mask = mod.dropout(x, p, 5)
    assert np.all(np.isfinite(y)) and np.all((mask == 0) | (mask == 2.0 ** 20))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), float("inf"), -float("inf")])
def test_dropout_rejects_bad_p(mod, p):
    with pytest.raises(ValueError, match=r"\bp\b"):
        mod.dropout(np.ones((3, 3)), p, 0)


@pytest.mark.parametrize("seed", [0, 1, 2 ** 63, 2 ** 64 - 1, -5])
def test_dropout_mask_same_in_ops_and_reference(ops, ref, dt, seed):
    x = normal((37, 29), dt, "same-mask", seed)
    for p in (0.05, 0.5, 0.95):
        y, mask = ops.dropout(x, p, seed)
        ry, rmask = ref.dropout(x, p, seed)
        np.testing.assert_array_equal(mask, rmask)
        np.testing.assert_array_equal(y, ry)


def test_dropout_random_numbers_are_splitmix64(mod):
    """The kept/dropped decision follows u_i = (splitmix64(seed, i) >> 11) * 2**-53,
    checked against SplitMix64's published first outputs for seed 0."""
    first = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    u = [(z >> 11) * 2.0 ** -53 for z in first]          # 0.883..., 0.431..., 0.026...
    x = np.ones(3)
    # u_i >= p keeps unit i: pick p just above and just below each u_i
    for i, ui in enumerate(u):
        assert mod.dropout(x, ui, 0)[1][i] != 0
        assert mod.dropout(x, np.nextafter(ui, 1.0), 0)[1][i] == 0
