"""The vectorised exp of the softmax cores (csrc/fastnn_exp.h) against exp computed in
long double: within 2 ulp over the whole range where the result is a normal number,
within one smallest subnormal below it, and libm's results at the edges (NaN, infinities,
overflow, underflow). Likewise the sigmoid and tanh built on it (the activation cores)."""
import numpy as np
import pytest

from fastnn._kernels import activations
from fastnn._kernels import softmax as kernels

# (dtype, smallest x whose exp is not 0, largest x whose exp is finite)
RANGES = [(np.float64, -745.13, 709.78), (np.float32, -103.97, 88.72)]


def vector_exp(x):
    out = np.full_like(x, 7.0)
    kernels.exp(x, out)
    return out


@pytest.mark.parametrize("dtype, lo, hi", RANGES)
def test_exp_within_two_ulp_of_long_double(dtype, lo, hi):
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("long double is no wider than double here")
    rng = np.random.default_rng(0)
    # lengths that are not multiples of any vector width
    x = np.concatenate([rng.uniform(lo, hi, 100_003), rng.uniform(-1, 1, 50_001),
                        rng.uniform(-30, 0, 50_001), [0.0, -0.0, 1.0, -1.0]]).astype(dtype)
    out = vector_exp(x)
    truth = np.exp(x.astype(np.longdouble))
    err = np.abs(out.astype(np.longdouble) - truth)
    normal = truth >= np.finfo(dtype).tiny
    ulps = err[normal] / np.spacing(truth[normal].astype(dtype)).astype(np.longdouble)
    assert ulps.max() < 2, f"{dtype.__name__}: {float(ulps.max())} ulp at x = {x[normal][ulps.argmax()]}"
    assert (~normal).sum() > 100
    subnormal_steps = err[~normal] / np.longdouble(np.finfo(dtype).smallest_subnormal)
    assert subnormal_steps.max() <= 1
    assert out[-4] == 1 and out[-3] == 1


@pytest.mark.parametrize("dtype, lo, hi", RANGES)
def test_exp_edges_match_libm(dtype, lo, hi):
    big = np.finfo(dtype).max
    x = np.array([np.nan, -np.inf, np.inf, -big, big, hi, hi + 0.02, lo, lo - 0.5, -1e4, 1e4],
                 dtype=dtype)
    out = vector_exp(x)
    with np.errstate(over="ignore", under="ignore"):
        expected = np.exp(x.astype(np.float64)).astype(dtype)
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], expected[1:])
    assert np.isfinite(out[5]) and out[5] > 0          # largest finite
    assert out[6] == np.inf and out[7] > 0 and out[8] == 0


def test_exp_rejects_unequal_lengths():
    x = np.zeros(5)
    out = np.full(4, 3.0)
    with pytest.raises(ValueError, match="5 elements but out has 4"):
        kernels.exp(x, out)
    assert (out == 3.0).all()


def activation(kind, x):
    out = np.full_like(x, 7.0)
    activations.forward(kind, x, out, 1)
    return out


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# (kernel, its definition in long double, ulp bound; measured: sigmoid 2.03 in float32
# and 2.22 in float64, where e / (1 + e) adds a rounding to exp's; tanh 1.30 and 1.32)
ACTIVATIONS = [(activations.SIGMOID, _sigmoid, 3), (activations.TANH, np.tanh, 2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind, truth_fn, bound", ACTIVATIONS)
def test_sigmoid_and_tanh_within_a_few_ulp_of_long_double(dtype, kind, truth_fn, bound):
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("long double is no wider than double here")
    rng = np.random.default_rng(1)
    # both sides of tanh's switch at |x| = 0.625, tiny and huge x, the underflow of sigmoid
    x = np.concatenate([rng.uniform(-30, 30, 100_003), rng.uniform(-0.7, 0.7, 50_001),
                        np.geomspace(1e-30, 1, 5_001), -np.geomspace(1e-30, 1, 5_001),
                        rng.uniform(-800, 800, 5_001), [0.625, -0.625]]).astype(dtype)
    out = activation(kind, x)
    with np.errstate(over="ignore", under="ignore"):
        truth = truth_fn(x.astype(np.longdouble))
    err = np.abs(out.astype(np.longdouble) - truth)
    normal = np.abs(truth) >= np.finfo(dtype).tiny
    ulps = err[normal] / np.spacing(np.abs(truth[normal]).astype(dtype)).astype(np.longdouble)
    assert ulps.max() < bound, \
        f"{dtype.__name__}: {float(ulps.max())} ulp at x = {x[normal][ulps.argmax()]}"
    subnormal_steps = err[~normal] / np.longdouble(np.finfo(dtype).smallest_subnormal)
    assert subnormal_steps.max(initial=0) <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_edges(dtype):
    big = np.finfo(dtype).max
    x = np.array([np.nan, -np.inf, np.inf, -big, big, 0.0, -0.0], dtype=dtype)
    sig = activation(activations.SIGMOID, x)
    assert np.isnan(sig[0])
    np.testing.assert_array_equal(sig[1:], [0, 1, 0, 1, 0.5, 0.5])
    tanh = activation(activations.TANH, x)
    assert np.isnan(tanh[0])
    np.testing.assert_array_equal(tanh[1:], [-1, 1, -1, 1, 0, 0])
    assert not np.signbit(tanh[5]) and np.signbit(tanh[6])        # tanh(-0) is -0
