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
