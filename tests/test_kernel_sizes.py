"""The kernels' def wrappers check that the arrays whose sizes must agree do, and raise
ValueError before touching memory: a mismatch used to read or write past an array."""
import numpy as np
import pytest

from fastnn._kernels import optimizers as _opt


def _arrays(sizes, dtype, value=0.5):
    return [np.full(size, value, dtype=dtype) for size in sizes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", [1, 2])
@pytest.mark.parametrize("delta", [-1, 1])
def test_sgd_step_rejects_arrays_of_other_sizes(dtype, which, delta):
    sizes = [8, 8, 8]
    sizes[which] += delta
    param, grad, buf = _arrays(sizes, dtype)
    before = [param.copy(), buf.copy()]
    with pytest.raises(ValueError, match="same size"):
        _opt.sgd_step(param, grad, buf, 0.1, 0.9, 0.0, False, 0.0, False, 1)
    np.testing.assert_array_equal(param, before[0])
    np.testing.assert_array_equal(buf, before[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", [1, 2, 3])
@pytest.mark.parametrize("delta", [-1, 1])
def test_adam_step_rejects_arrays_of_other_sizes(dtype, which, delta):
    sizes = [8, 8, 8, 8]
    sizes[which] += delta
    param, grad, m, v = _arrays(sizes, dtype)
    before = [a.copy() for a in (param, m, v)]
    with pytest.raises(ValueError, match="same size"):
        _opt.adam_step(param, grad, m, v, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1, 1)
    for a, b in zip((param, m, v), before):
        np.testing.assert_array_equal(a, b)


def test_optimizer_steps_of_matching_sizes_still_run():
    param, grad, buf = _arrays([5, 5, 5], np.float64)
    _opt.sgd_step(param, grad, buf, 0.1, 0.0, 0.0, False, 0.0, True, 1)
    np.testing.assert_array_equal(param, np.full(5, 0.45))
    param, grad, m, v = _arrays([5, 5, 5, 5], np.float64)
    m[:] = v[:] = 0
    _opt.adam_step(param, grad, m, v, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1, 1)
    np.testing.assert_allclose(param, np.full(5, 0.4), rtol=1e-7)


# every other def wrapper: one call with matching arrays is built, then each array in
# turn is replaced by one of another size (one element or one row/column more or less)
from fastnn._kernels import activations as _act       # noqa: E402
from fastnn._kernels import batchnorm as _bn          # noqa: E402
from fastnn._kernels import dropout as _drop          # noqa: E402
from fastnn._kernels import linear as _lin            # noqa: E402
from fastnn._kernels import losses as _loss           # noqa: E402
from fastnn._kernels import softmax as _sm            # noqa: E402

N, D, K = 4, 3, 5


def _f(*shape, dtype=np.float64):
    return np.full(shape, 0.25, dtype=dtype)


def _calls(dtype):
    """name -> (function, [arguments], indices of the arrays whose size is checked)."""
    f = lambda *shape: _f(*shape, dtype=dtype)           # noqa: E731
    labels = np.array([0, 4, 2, 1], dtype=np.int64)
    return {
        "act_forward": (_act.forward, [_act.RELU, f(N * D), f(N * D), 1], [2]),
        "act_backward": (_act.backward, [_act.TANH, f(N * D), f(N * D), f(N * D), 1], [2, 3]),
        "bn_forward": (_bn.batchnorm_forward, [f(N, D), f(D), f(D), 1e-5, f(N, D), f(N, D),
                                               f(D), f(D), f(D), 1], [1, 2, 4, 5, 6, 7, 8]),
        "bn_backward": (_bn.batchnorm_backward, [f(N, D), f(N, D), f(D), f(D), f(N, D), f(D),
                                                 f(D), 1], [1, 2, 3, 4, 5, 6]),
        "bn_eval": (_bn.batchnorm_eval, [f(N, D), f(D), f(D), f(D), f(D), 1e-5, f(N, D)],
                    [1, 2, 3, 4, 6]),
        "bn_running": (_bn.batchnorm_running_update, [f(D), f(D), N, 0.1, f(D), f(D)],
                       [1, 4, 5]),
        "dropout": (_drop.dropout, [f(N * D), 0.5, 7, f(N * D), f(N * D), 1], [3, 4]),
        "linear_forward": (_lin.linear_forward, [f(N, D), f(D, K), f(K), f(N, K), 1],
                           [1, 2, 3]),
        "linear_backward": (_lin.linear_backward, [f(N, D), f(D, K), f(N, K), f(N, D),
                                                   f(D, K), f(K), 1], [1, 2, 3, 4, 5]),
        "mse": (_loss.mse, [f(N * K), f(N * K), f(N * K)], [1, 2]),
        "bce": (_loss.bce_with_logits, [f(N * K), f(N * K), f(N * K)], [1, 2]),
        "softmax": (_sm.softmax, [f(N, K), f(N, K), False, 1], [1]),
        "ce_labels": (_sm.cross_entropy_labels, [f(N, K), labels, 0.0, f(N, K),
                                                 np.zeros(N), 1], [1, 3]),
        "ce_probs": (_sm.cross_entropy_probs, [f(N, K), f(N, K), f(N, K), np.zeros(N), 1],
                     [1, 2]),
        "one_hot": (_sm.one_hot, [labels, f(N, K)], [1]),
    }


def _resized(a, axis, delta):
    shape = list(a.shape)
    shape[axis] += delta
    return np.full(shape, 0.25, dtype=a.dtype)


def _mismatches(dtype):
    for name, (fn, args, checked) in sorted(_calls(dtype).items()):
        for i in checked:
            # one_hot's out may have any number of columns (classes) above the labels
            for axis in range(1 if name == "one_hot" else args[i].ndim):
                for delta in (-1, 1):
                    yield name, fn, args, i, axis, delta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_wrappers_run_with_matching_arrays(dtype):
    for name, (fn, args, _checked) in _calls(dtype).items():
        fn(*args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(sum(1 for _ in _mismatches(np.float64))))
def test_kernel_wrappers_reject_arrays_of_other_sizes(dtype, case):
    name, fn, args, i, axis, delta = list(_mismatches(dtype))[case]
    args = list(args)
    args[i] = _resized(args[i], axis, delta)
    outputs = [a for a in args if isinstance(a, np.ndarray)]
    before = [a.copy() for a in outputs]
    with pytest.raises(ValueError):
        fn(*args)
    for a, b in zip(outputs, before):        # nothing written
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("label", [-1, 5])
def test_label_kernels_reject_labels_outside_the_classes(label):
    labels = np.array([0, label, 2, 1], dtype=np.int64)
    dz, out = _f(N, K), _f(N, K)
    with pytest.raises(ValueError, match="labels must lie in"):
        _sm.cross_entropy_labels(_f(N, K), labels, 0.0, dz, np.zeros(N), 1)
    with pytest.raises(ValueError, match="labels must lie in"):
        _sm.one_hot(labels, out)
    np.testing.assert_array_equal(dz, _f(N, K))
    np.testing.assert_array_equal(out, _f(N, K))


def _ovr_arrays(k=2, n=6, d=3, dtype=np.float64):
    from fastnn._kernels import perceptron
    return dict(X=np.ones((n, d), dtype), Y=np.ones((k, n), dtype), sw=np.ones(n, dtype),
                val_mask=np.zeros(n, np.uint8), W=np.zeros((k, d), dtype),
                B=np.zeros(k), Q=np.zeros((k, d), dtype),
                order=np.tile(np.arange(n, dtype=np.intp), (k, 1)),
                state=perceptron.new_state(k, 1.0, False),
                seeds=np.zeros(k, np.uint64), pos=np.ones(k), neg=np.ones(k))


@pytest.mark.parametrize("name, bad", [
    ("Y", np.ones((2, 5))), ("sw", np.ones(7)), ("val_mask", np.zeros(5, np.uint8)),
    ("W", np.zeros((2, 4))), ("B", np.zeros(3)), ("Q", np.zeros((1, 3))),
    ("order", np.zeros((2, 5), np.intp)), ("seeds", np.zeros(1, np.uint64)),
    ("pos", np.ones(1)), ("neg", np.ones(3)),
    ("order", np.array([[0, 1, 2, 3, 4, 6]] * 2, np.intp)),
    ("order", np.array([[0, 1, 2, 3, 4, -1]] * 2, np.intp))])
@pytest.mark.parametrize("sparse", [False, True])
def test_perceptron_kernel_rejects_arrays_that_do_not_fit(name, bad, sparse):
    from fastnn._kernels import perceptron
    a = _ovr_arrays()
    a[name] = bad
    before = a["W"].copy()
    if sparse:
        X = a.pop("X")
        head = (X.ravel(), np.tile(np.arange(3, dtype=np.intp), 6),
                np.arange(0, 19, 3, dtype=np.intp), 3)
        fit = perceptron.fit_ovr_sparse
    else:
        head = (a.pop("X"),)
        fit = perceptron.fit_ovr
    with pytest.raises(ValueError, match="do not fit|not a row index"):
        fit(*head, *a.values(), n_epochs=2, penalty=0, alpha=0.0, l1_ratio=0.0, eta=1.0,
            fit_intercept=True, tol=-np.inf, n_iter_no_change=5, shuffle=True,
            early_stopping=False, n_threads=1)
    np.testing.assert_array_equal(a["W"], before)
