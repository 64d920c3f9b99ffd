"""fastnn.ops equals fastnn.reference: every op x dtype x memory layout x batch size,
property-based tests over shapes and values, dtype promotion, thread counts and
concurrent callers."""
import inspect
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import (DTYPES, LAYOUTS, as_layout, assert_close, assert_close_float, labels,
                      normal, probabilities, rtol_for, uniform)

import fastnn.reference as reference

SIZES = [1, 7, 300]   # one row, an odd size, and a batch of a few hundred rows
WIDTH = 131           # odd, so no loop divides evenly (the threaded path: _big_inputs)
EPS = 1e-5
HYPOTHESIS = settings(max_examples=30, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------- the op table
# Each case builds the positional arguments of one op for a batch size n and a dtype,
# and checks the ops result against the reference result with error scales set by
# the arithmetic of that op.

def _default_check(got, want, args, dtype):
    assert_close(got, want)


def _elementwise_backward_check(got, want, args, dtype):
    # dy * y * (1 - y), dy * (1 - y*y): terms of size |dy| * (1 + |y| + y^2)
    a, dy = (np.asarray(v, dtype=np.float64) for v in args)
    assert_close(got, want, scale=np.abs(dy) * (1 + np.abs(a) + a ** 2))


def _exact_check(got, want, args, dtype):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def _linear_forward_check(got, want, args, dtype):
    x, w, b = (np.abs(np.asarray(a, dtype=np.float64)) if a is not None else 0 for a in args)
    assert_close(got, want, scale=x @ w + b)


def _linear_backward_check(got, want, args, dtype):
    x, w, dy = (np.abs(np.asarray(a, dtype=np.float64)) for a in args)
    assert isinstance(got, tuple) and len(got) == 3
    assert_close(got[0], want[0], scale=dy @ w.T)
    assert_close(got[1], want[1], scale=x.T @ dy)
    assert_close(got[2], want[2], scale=dy.sum(axis=0))


def _cross_entropy_check(got, want, args, dtype):
    z = np.asarray(args[0], dtype=np.float64)
    n, k = z.shape
    assert isinstance(got, tuple) and len(got) == 2
    # loss_i = logsumexp(z_i) - z_i[y]: cancellation between terms of size |z| + log k.
    assert_close_float(got[0], want[0], dtype=dtype, scale=np.abs(z).max() + np.log(k))
    # dlogits = (p * sum t - t) / n with 0 <= p <= 1: terms of size max(1, sum|t|) / n.
    t = np.asarray(args[1])
    tsum = np.abs(t).sum(axis=1, keepdims=True) if t.ndim == 2 else 1.0
    assert_close(got[1], want[1], scale=np.maximum(1.0, tsum) / n)


def _bn_scales(x, gamma, beta, eps, rtol):
    """Error scales of batchnorm_forward's outputs, following the two-pass arithmetic:
    mean has error ~rtol * mean|x|; so x - mean has error ~rtol * C with
    C = |x| + mean|x|; var = mean((x - mean)^2) then has error
    ~rtol * mean(2 |x - mean| C + rtol C^2); inv_std = (var + eps)^-1/2 passes on half
    the relative error of var + eps, and x_hat = (x - mean) * inv_std both errors."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    var = (centred ** 2).mean(axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    big_c = np.abs(x) + np.abs(x).mean(axis=0)
    s_var = (2 * np.abs(centred) * big_c + rtol * big_c ** 2).mean(axis=0)
    s_inv = 0.5 * inv_std * s_var / (var + eps)
    s_xhat = big_c * inv_std + np.abs(centred) * s_inv
    s_y = np.abs(np.asarray(gamma, dtype=np.float64)) * s_xhat + np.abs(np.asarray(beta))
    return s_y, s_xhat, np.abs(x).mean(axis=0), s_var, s_inv


def _batchnorm_forward_check(got, want, args, dtype):
    x, gamma, beta, eps = args
    s_y, s_xhat, s_mean, s_var, s_inv = _bn_scales(x, gamma, beta, eps, rtol_for(dtype))
    y, cache = got
    assert isinstance(cache, tuple) and len(cache) == 5, "cache is (x_hat, mean, var, inv_std, gamma)"
    assert_close(y, want[0], scale=s_y)
    for name, g, w, s in zip(["x_hat", "mean", "var", "inv_std"], cache, want[1], [s_xhat, s_mean, s_var, s_inv]):
        try:
            assert_close(g, w, scale=s)
        except AssertionError as e:
            raise AssertionError(f"cache {name}: {e}") from None
    _exact_check(cache[4], want[1][4], args, dtype)


def _batchnorm_backward_check(got, want, args, dtype):
    dy, (x_hat, _, _, inv_std, gamma) = args
    dy, x_hat, inv_std, gamma = (np.abs(np.asarray(a, dtype=np.float64)) for a in (dy, x_hat, inv_std, gamma))
    n = dy.shape[0]
    s_dbeta = dy.sum(axis=0)
    s_dgamma = (dy * x_hat).sum(axis=0)
    # dx = gamma * inv_std / n * (n dy - dbeta - x_hat dgamma): cancellation of those terms.
    s_dx = gamma * inv_std / n * (n * dy + s_dbeta + x_hat * s_dgamma)
    assert isinstance(got, tuple) and len(got) == 3
    assert_close(got[0], want[0], scale=s_dx)
    assert_close(got[1], want[1], scale=s_dgamma)
    assert_close(got[2], want[2], scale=s_dbeta)


def _dropout_check(got, want, args, dtype):
    y, mask = got
    _exact_check(mask, want[1], args, dtype)        # the same random numbers, bit for bit
    assert_close(y, want[0])


def _elementwise_loss_check(got, want, args, dtype):
    z = np.asarray(args[0], dtype=np.float64)
    assert isinstance(got, tuple) and len(got) == 2
    # a mean of terms of size up to z^2 (mse) or |z| + log 2 (bce)
    assert_close_float(got[0], want[0], dtype=dtype, scale=float(np.mean(z ** 2 + np.abs(z))) + 1)
    assert_close(got[1], want[1], scale=np.max(np.abs(want[1])))


def _bn_cache(n, dtype, key):
    x = normal((n, WIDTH), dtype, key, "x", scale=3.0, shift=1.0)
    gamma = normal((WIDTH,), dtype, key, "gamma", shift=1.0)
    beta = normal((WIDTH,), dtype, key, "beta")
    return reference.batchnorm_forward(x, gamma, beta, EPS)[1]


CASES = {
    "sigmoid": (lambda n, dt: (normal((n, WIDTH), dt, "sig", n, scale=6.0),), _default_check),
    "tanh": (lambda n, dt: (normal((n, WIDTH), dt, "tanh", n, scale=3.0),), _default_check),
    "relu": (lambda n, dt: (normal((n, WIDTH), dt, "relu", n),), _exact_check),
    "sigmoid_backward": (lambda n, dt: (uniform((n, WIDTH), dt, "sb", n),
                                        normal((n, WIDTH), dt, "sb-dy", n)), _elementwise_backward_check),
    "tanh_backward": (lambda n, dt: (uniform((n, WIDTH), dt, "tb", n, low=-1, high=1),
                                     normal((n, WIDTH), dt, "tb-dy", n)), _elementwise_backward_check),
    "relu_backward": (lambda n, dt: (normal((n, WIDTH), dt, "rb", n),
                                     normal((n, WIDTH), dt, "rb-dy", n)), _exact_check),
    "softmax": (lambda n, dt: (normal((n, WIDTH), dt, "sm", n, scale=5.0),), _default_check),
    "log_softmax": (lambda n, dt: (normal((n, WIDTH), dt, "lsm", n, scale=5.0),), _default_check),
    "one_hot": (lambda n, dt: (labels(n, 10, "oh", n), 10), _exact_check),
    "cross_entropy[index]": (lambda n, dt: (normal((n, WIDTH), dt, "ce", n, scale=4.0),
                                            labels(n, WIDTH, "ce-y", n)), _cross_entropy_check),
    "cross_entropy[probs]": (lambda n, dt: (normal((n, WIDTH), dt, "cep", n, scale=4.0),
                                            probabilities((n, WIDTH), dt, "cep-t", n)),
                             _cross_entropy_check),
    "cross_entropy[weights]": (lambda n, dt: (normal((n, WIDTH), dt, "cew", n, scale=4.0),
                                              uniform((n, WIDTH), dt, "cew-t", n, low=-0.5, high=2)),
                               _cross_entropy_check),
    "mse_loss": (lambda n, dt: (normal((n, WIDTH), dt, "mse", n, scale=3.0),
                                normal((n, WIDTH), dt, "mse-t", n)), _elementwise_loss_check),
    "binary_cross_entropy_with_logits": (lambda n, dt: (normal((n, WIDTH), dt, "bce", n, scale=4.0),
                                                        uniform((n, WIDTH), dt, "bce-t", n)),
                                         _elementwise_loss_check),
    "linear_forward": (lambda n, dt: (normal((n, 64), dt, "lf-x", n), normal((64, WIDTH), dt, "lf-w", n),
                                      normal((WIDTH,), dt, "lf-b", n)), _linear_forward_check),
    "linear_forward[nobias]": (lambda n, dt: (normal((n, 64), dt, "lf0-x", n),
                                              normal((64, WIDTH), dt, "lf0-w", n), None),
                               _linear_forward_check),
    "linear_backward": (lambda n, dt: (normal((n, 64), dt, "lb-x", n), normal((64, WIDTH), dt, "lb-w", n),
                                       normal((n, WIDTH), dt, "lb-dy", n)), _linear_backward_check),
    "batchnorm_forward": (lambda n, dt: (normal((n, WIDTH), dt, "bf-x", n, scale=3.0, shift=1.0),
                                         normal((WIDTH,), dt, "bf-g", n, shift=1.0),
                                         normal((WIDTH,), dt, "bf-b", n), EPS),
                          _batchnorm_forward_check),
    "batchnorm_backward": (lambda n, dt: (normal((n, WIDTH), dt, "bb-dy", n), _bn_cache(n, dt, "bb")),
                           _batchnorm_backward_check),
    "dropout": (lambda n, dt: (normal((n, WIDTH), dt, "do", n), 0.3, 12345), _dropout_check),
}


def _op_name(case):
    return case.split("[")[0]


def _in_layout(args, layout):
    """Every array argument (also inside the batchnorm cache tuple) in the layout."""
    def conv(a):
        if isinstance(a, np.ndarray):
            return as_layout(a, layout)
        if isinstance(a, tuple):
            return tuple(conv(v) for v in a)
        return a
    return tuple(conv(a) for a in args)


def test_cases_cover_every_op():
    assert {_op_name(c) for c in CASES} == set(reference.__all__)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", list(CASES))
def test_op_matches_reference(ops, case, n, dtype, layout):
    build, check = CASES[case]
    args = build(n, dtype)
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    want = getattr(reference, _op_name(case))(*args)
    given_args = _in_layout(args, layout)
    got = getattr(ops, _op_name(case))(*given_args)
    check(got, want, args, dtype)
    for a, b in zip(given_args, before):            # inputs are never written to
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b)


SHAPES = [(), (5,), (2, 3, 4), (0,), (3, 0), (2, 0, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_elementwise_any_shape(ops, name, shape):
    x = np.linspace(-3, 3, int(np.prod(shape))).reshape(shape)
    assert_close(getattr(ops, name)(x), getattr(reference, name)(x))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["sigmoid_backward", "tanh_backward", "relu_backward"])
def test_backward_any_shape(ops, name, shape):
    size = int(np.prod(shape))
    a = np.linspace(-0.9, 0.95, size).reshape(shape)
    dy = np.linspace(2, -1, size).reshape(shape)
    assert_close(getattr(ops, name)(a, dy), getattr(reference, name)(a, dy))


@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_any_shape(ops, shape):
    x = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape)
    y, mask = ops.dropout(x, 0.4, 7)
    ry, rmask = reference.dropout(x, 0.4, 7)
    _exact_check(mask, rmask, None, None)
    assert_close(y, ry)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_elementwise_nan_propagates(ops, name):
    x = np.array([np.nan, -1.0, np.nan, 2.0])
    got, want = getattr(ops, name)(x), getattr(reference, name)(x)
    assert np.isnan(got[0]) and np.isnan(got[2])
    assert_close(got, want)


@pytest.mark.parametrize("dy_dtype,cache_dtype", [
    (np.float32, np.float32), (np.float64, np.float64), (np.float32, np.float64), (np.int64, np.float32),
    (np.float64, np.float32),
])
def test_batchnorm_backward_dtype_promotion(ops, dy_dtype, cache_dtype):
    x = normal((5, 3), cache_dtype, "bbp-x")
    _, cache = reference.batchnorm_forward(x, np.ones(3, cache_dtype), np.zeros(3, cache_dtype), EPS)
    dy = (normal((5, 3), np.float64, "bbp-dy") * 4).astype(dy_dtype)
    common = reference._common_float_dtype([dy, x])
    got = ops.batchnorm_backward(dy, cache)
    want = reference.batchnorm_backward(dy.astype(common), tuple(c.astype(common) for c in cache))
    for g, w in zip(got, want):
        assert g.dtype == common
    _batchnorm_backward_check(got, want, (dy, cache), common)


def test_one_hot_float_labels_and_dtype(ops):
    lab = np.array([2.0, 0.0, 1.0, 2.0])
    for dt in [np.float32, np.float64]:
        got = ops.one_hot(lab, 3, dtype=dt)
        _exact_check(got, reference.one_hot(lab, 3, dtype=dt), None, None)
    _exact_check(ops.one_hot(lab, 3), reference.one_hot(lab, 3), None, None)
    assert ops.one_hot(lab, 3).dtype == np.float64


# ------------------------------------------------------------------------ signatures

def test_signatures_match_reference(ops):
    public = [name for name, f in inspect.getmembers(reference, inspect.isfunction)
              if not name.startswith("_") and f.__module__ == reference.__name__]
    assert sorted(public) == sorted(reference.__all__)
    for name in public:
        assert hasattr(ops, name), f"fastnn.ops lacks {name}"
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name)), name


# ------------------------------------------------------------------ dtype promotion

PROMOTIONS = [
    # input dtypes                        -> common dtype
    ((np.int64,), np.float64),
    ((np.bool_,), np.float64),
    ((np.float16,), np.float32),
    ((np.float32,), np.float32),
    ((np.int32, np.float32), np.float32),
    ((np.float32, np.int64), np.float32),
    ((np.float32, np.float64), np.float64),
    ((np.float64, np.float32), np.float64),
    ((np.int8, np.int16), np.float64),
    ((np.float16, np.float64), np.float64),
]

_PROMOTION_OPS = {
    # op: builder of its array operands' values (exact in every dtype tested)
    "sigmoid": lambda: [np.array([[-2.0, 0.0, 1.0], [3.0, -1.0, 2.0]])],
    "tanh": lambda: [np.array([[-2.0, 0.0, 1.0], [3.0, -1.0, 2.0]])],
    "relu": lambda: [np.array([[-2.0, 0.0, 1.0], [3.0, -1.0, 2.0]])],
    "sigmoid_backward": lambda: [np.array([[0.0, 1.0, 0.5]]), np.array([[1.0, 2.0, -3.0]])],
    "tanh_backward": lambda: [np.array([[0.0, 1.0, 0.5]]), np.array([[1.0, 2.0, -3.0]])],
    "relu_backward": lambda: [np.array([[-1.0, 0.0, 2.0]]), np.array([[1.0, 2.0, -3.0]])],
    "softmax": lambda: [np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])],
    "log_softmax": lambda: [np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])],
    "cross_entropy": lambda: [np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]]),
                              np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])],
    "linear_forward": lambda: [np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]]),
                               np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 1.0]]), np.array([1.0, 0.0])],
    "linear_backward": lambda: [np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]]),
                                np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 1.0]]),
                                np.array([[1.0, 0.0], [1.0, 1.0]])],
    "batchnorm_forward": lambda: [np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                                  np.array([1.0, 2.0]), np.array([0.0, 1.0])],
    "dropout": lambda: [np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])],
}


def _call(module, name, arrays):
    if name == "batchnorm_forward":
        return module.batchnorm_forward(*arrays, EPS)
    if name == "dropout":
        return module.dropout(arrays[0], 0.5, 3)
    return getattr(module, name)(*arrays)


def _arrays_of(result):
    """The arrays in an op's result, flattened (loss floats and tuples unpacked)."""
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, tuple):
        return [a for r in result for a in _arrays_of(r)]
    return []


def _promotion_params():
    # An op takes part in a row when it has at least as many array operands as the row
    # has dtypes (extra operands cycle through the row's dtypes, so the common dtype holds).
    for name, build in _PROMOTION_OPS.items():
        for dtypes, common in PROMOTIONS:
            if len(build()) >= len(dtypes):
                yield pytest.param(name, dtypes, common,
                                   id=f"{name}-{'+'.join(np.dtype(d).name for d in dtypes)}")


@pytest.mark.parametrize("name,dtypes,common", list(_promotion_params()))
def test_dtype_promotion(ops, name, dtypes, common):
    values = _PROMOTION_OPS[name]()
    # Give the operands the dtypes in turn (cycling when an op has more operands).
    arrays = [v.astype(dtypes[i % len(dtypes)]) for i, v in enumerate(values)]
    got = _call(ops, name, arrays)
    want = _call(reference, name, [a.astype(common) for a in arrays])
    got_arrays, want_arrays = _arrays_of(got), _arrays_of(want)
    assert len(got_arrays) == len(want_arrays)
    for g, w in zip(got_arrays, want_arrays):
        assert g.dtype == np.dtype(common), f"{name}: output dtype {g.dtype}, expected {common}"
        assert_close(g, w)
    # The reference promotes the same way.
    for r in _arrays_of(_call(reference, name, arrays)):
        assert r.dtype == np.dtype(common)


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8, np.float64, np.float32])
@pytest.mark.parametrize("logit_dtype", [np.float32, np.float64, np.int64])
def test_cross_entropy_index_target_dtypes(ops, logit_dtype, label_dtype):
    z = np.array([[1, 0, 2], [0, 0, 1], [3, 1, 0]], dtype=logit_dtype)
    y = np.array([2, 0, 1], dtype=label_dtype)
    loss, grad = ops.cross_entropy(z, y)
    rloss, rgrad = reference.cross_entropy(z, y)
    expected = np.float64 if logit_dtype == np.int64 else logit_dtype
    assert grad.dtype == expected and rgrad.dtype == expected
    assert_close(grad, rgrad)
    assert_close_float(loss, rloss, dtype=expected, scale=4.0)


# --------------------------------------------------------------- property-based tests

def _float_arrays(dtype, shape, bound):
    width = 32 if dtype == np.float32 else 64
    return hnp.arrays(dtype, shape, elements=st.floats(-bound, bound, width=width,
                                                       allow_subnormal=False))


_dtypes = st.sampled_from(DTYPES)
_layouts = st.sampled_from(LAYOUTS)


@HYPOTHESIS
@given(data=st.data(), name=st.sampled_from(["sigmoid", "tanh", "relu"]), dt=_dtypes,
       layout=_layouts)
def test_property_elementwise(ops, data, name, dt, layout):
    x = data.draw(_float_arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9),
                                1e3))
    assert_close(getattr(ops, name)(as_layout(x, layout)), getattr(reference, name)(x))


@HYPOTHESIS
@given(data=st.data(), name=st.sampled_from(["sigmoid_backward", "tanh_backward", "relu_backward"]),
       dt=_dtypes, layout=_layouts)
def test_property_elementwise_backward(ops, data, name, dt, layout):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=9))
    a = data.draw(_float_arrays(dt, shape, 10.0))
    dy = data.draw(_float_arrays(dt, shape, 10.0))
    got = getattr(ops, name)(as_layout(a, layout), as_layout(dy, layout))
    _elementwise_backward_check(got, getattr(reference, name)(a, dy), (a, dy), dt)


_rows = st.tuples(st.integers(1, 40), st.integers(1, 40))


@HYPOTHESIS
@given(data=st.data(), name=st.sampled_from(["softmax", "log_softmax"]), dt=_dtypes, layout=_layouts)
def test_property_softmax(ops, data, name, dt, layout):
    z = data.draw(_float_arrays(dt, _rows, 1e3))
    got = getattr(ops, name)(as_layout(z, layout))
    want = getattr(reference, name)(z)
    # log_softmax = (z - m) - log(sum): terms of size 2*max|z| + log k
    scale = 1.0 if name == "softmax" else 2 * np.abs(z).max() + np.log(z.shape[1])
    assert_close(got, want, scale=scale)


@HYPOTHESIS
@given(data=st.data(), dt=_dtypes, layout=_layouts, prob_target=st.booleans())
def test_property_cross_entropy(ops, data, dt, layout, prob_target):
    z = data.draw(_float_arrays(dt, _rows, 1e3))
    n, k = z.shape
    if prob_target:
        t = data.draw(_float_arrays(dt, (n, k), 1.0)).astype(dt)
    else:
        t = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    got = ops.cross_entropy(as_layout(z, layout), as_layout(t, layout))
    want = reference.cross_entropy(z, t)
    _cross_entropy_check(got, want, (z, t), dt)


@HYPOTHESIS
@given(data=st.data(), dt=_dtypes, layout=_layouts, bias=st.booleans(),
       dims=st.tuples(st.integers(0, 20), st.integers(1, 20), st.integers(1, 20)))
def test_property_linear(ops, data, dt, layout, bias, dims):
    n, n_in, n_out = dims
    x = data.draw(_float_arrays(dt, (n, n_in), 100.0))
    w = data.draw(_float_arrays(dt, (n_in, n_out), 100.0))
    b = data.draw(_float_arrays(dt, (n_out,), 100.0)) if bias else None
    dy = data.draw(_float_arrays(dt, (n, n_out), 100.0))
    L = lambda a: None if a is None else as_layout(a, layout)  # noqa: E731
    _linear_forward_check(ops.linear_forward(L(x), L(w), L(b)),
                          reference.linear_forward(x, w, b), (x, w, b), dt)
    _linear_backward_check(ops.linear_backward(L(x), L(w), L(dy)),
                           reference.linear_backward(x, w, dy), (x, w, dy), dt)


@HYPOTHESIS
@given(data=st.data(), dt=_dtypes, layout=_layouts,
       dims=st.tuples(st.integers(1, 30), st.integers(1, 10)), eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_property_batchnorm(ops, data, dt, layout, dims, eps):
    x = data.draw(_float_arrays(dt, dims, 100.0))
    gamma = data.draw(_float_arrays(dt, dims[1:], 10.0))
    beta = data.draw(_float_arrays(dt, dims[1:], 10.0))
    dy = data.draw(_float_arrays(dt, dims, 10.0))
    args = (x, gamma, beta, eps)
    got = ops.batchnorm_forward(*_in_layout(args, layout))
    want = reference.batchnorm_forward(*args)
    _batchnorm_forward_check(got, want, args, dt)
    # backward from one shared cache, so only the backward arithmetic is compared
    cache = want[1]
    _batchnorm_backward_check(ops.batchnorm_backward(*_in_layout((dy, cache), layout)),
                              reference.batchnorm_backward(dy, cache), (dy, cache), dt)


@HYPOTHESIS
@given(data=st.data(), dt=_dtypes, layout=_layouts,
       p=st.one_of(st.just(0.0), st.floats(0.0, 0.99)),
       seed=st.one_of(st.integers(0, 2 ** 64 - 1), st.integers(-2 ** 70, 2 ** 70)))
def test_property_dropout(ops, data, dt, layout, p, seed):
    x = data.draw(_float_arrays(dt, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12), 1e3))
    y, mask = ops.dropout(as_layout(x, layout), p, seed)
    ry, rmask = reference.dropout(x, p, seed)
    _exact_check(mask, rmask, None, None)
    assert_close(y, ry)


@HYPOTHESIS
@given(k=st.integers(1, 20), data=st.data())
def test_property_one_hot(ops, k, data):
    lab = np.array(data.draw(st.lists(st.integers(0, k - 1), max_size=30)), dtype=np.int64)
    _exact_check(ops.one_hot(lab, k), reference.one_hot(lab, k), None, None)


# ------------------------------------------------------------------------- threads

def _big_inputs():
    # enough rows that every kernel's loops cross the parallel threshold (4M elements)
    n = 4194304 // WIDTH + 1
    return {name: build(n, np.float64) if name != "dropout" else build(n, np.float32)
            for name, (build, _) in CASES.items()}


def _run_all(module, inputs):
    return {case: getattr(module, _op_name(case))(*args) for case, args in inputs.items()}


def _assert_identical(a, b, what):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_identical(x, y, what)
    elif isinstance(a, float):
        assert a == b, what
    else:
        assert a.dtype == b.dtype and a.shape == b.shape, what
        np.testing.assert_array_equal(a, b, err_msg=what)


def test_same_results_for_one_and_two_threads(ops, restore_threads):
    """fastnn's own loops give the same bits at any thread count. The linear ops are
    left out: the thread count also bounds scipy's BLAS, which blocks a product
    differently on one thread and on two (test_linear_ops_on_one_and_two_threads)."""
    import fastnn
    inputs = {case: args for case, args in _big_inputs().items()
              if not case.startswith("linear")}
    fastnn.set_num_threads(1)
    assert fastnn.get_num_threads() == 1
    one = _run_all(ops, inputs)
    fastnn.set_num_threads(2)
    assert fastnn.get_num_threads() == 2
    two = _run_all(ops, inputs)
    for case in inputs:
        _assert_identical(one[case], two[case], f"{case}: 1 thread vs 2 threads")


def test_linear_ops_on_one_and_two_threads(ops, restore_threads):
    """With fastnn on 1 thread, BLAS runs on 1 thread too; each thread count is
    deterministic and both match the reference."""
    import fastnn
    inputs = {case: args for case, args in _big_inputs().items() if case.startswith("linear")}
    assert inputs
    for n in (1, 2):
        fastnn.set_num_threads(n)
        first = _run_all(ops, inputs)
        again = _run_all(ops, inputs)
        expected = _run_all(reference, inputs)
        for case in inputs:
            _assert_identical(first[case], again[case], f"{case}: {n} threads, twice")
            check = CASES[case][1]
            check(first[case], expected[case], inputs[case], np.float64)


def test_concurrent_python_threads(ops, restore_threads):
    """Several Python threads calling the kernels at once (the GIL is released inside)
    each get their own correct result."""
    import fastnn
    fastnn.set_num_threads(2)
    inputs = _big_inputs()
    expected = _run_all(ops, inputs)
    errors = []
    start = threading.Barrier(4)

    def worker(order):
        try:
            start.wait()
            for _ in range(2):
                for case in order:
                    got = getattr(ops, _op_name(case))(*inputs[case])
                    _assert_identical(got, expected[case], f"{case} in a concurrent thread")
        except BaseException as e:       # reported in the main thread
            errors.append(e)

    cases = list(inputs)
    threads = [threading.Thread(target=worker, args=(cases[i:] + cases[:i],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
