"""Every array a kernel entry point (fastnn._kernels) needs is declared ``not None``: a
None where an array must be raises TypeError instead of crashing the process. The
entries leave other checks to their callers (fastnn.ops, the layers, the estimators)."""
import numpy as np
import pytest

from fastnn._kernels import (activations, batchnorm, dropout, linear, losses, optimizers,
                             perceptron, softmax)


def _calls():
    """(name, entry, arguments) with valid arrays, for every entry point."""
    v = lambda *shape: np.ones(shape)                       # noqa: E731
    labels = np.zeros(3, dtype=np.int64)
    state = perceptron.new_state(2, 1.0, False)
    return [
        ("activations.forward", activations.forward, [activations.RELU, v(6), v(6), 1]),
        ("activations.backward", activations.backward,
         [activations.RELU, v(6), v(6), v(6), 1]),
        ("batchnorm_forward", batchnorm.batchnorm_forward,
         [v(3, 2), v(2), v(2), 1e-5, v(3, 2), v(3, 2), v(2), v(2), v(2), 1]),
        ("batchnorm_backward", batchnorm.batchnorm_backward,
         [v(3, 2), v(3, 2), v(2), v(2), v(3, 2), v(2), v(2), 1]),
        ("batchnorm_eval", batchnorm.batchnorm_eval,
         [v(3, 2), v(2), v(2), v(2), v(2), 1e-5, v(3, 2)]),
        ("batchnorm_running_update", batchnorm.batchnorm_running_update,
         [v(2), v(2), 3, 0.1, v(2), v(2)]),
        ("dropout", dropout.dropout, [v(6), 0.5, 1, v(6), v(6), 1]),
        ("linear_forward", linear.linear_forward, [v(3, 4), v(4, 2), None, v(3, 2), 1]),
        ("linear_backward", linear.linear_backward,
         [v(3, 4), v(4, 2), v(3, 2), None, v(4, 2), None, 1]),
        ("mse", losses.mse, [v(6), v(6), v(6)]),
        ("bce_with_logits", losses.bce_with_logits, [v(6), v(6), v(6)]),
        ("penalty_step", optimizers.penalty_step, [v(6), v(6), 0.1, 0.1, 1]),
        ("sgd_step", optimizers.sgd_step,
         [v(6), v(6), v(6), 0.1, 0.9, 0.0, False, 0.0, True, 1]),
        ("adam_step", optimizers.adam_step,
         [v(6), v(6), v(6), v(6), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1, 1]),
        ("softmax", softmax.softmax, [v(3, 2), v(3, 2), False, 1]),
        ("cross_entropy_labels", softmax.cross_entropy_labels,
         [v(3, 2), labels, 0.0, v(3, 2), v(3), 1]),
        ("cross_entropy_probs", softmax.cross_entropy_probs,
         [v(3, 2), v(3, 2), v(3, 2), v(3), 1]),
        ("exp", softmax.exp, [v(6), v(6)]),
        ("one_hot", softmax.one_hot, [labels, v(3, 2)]),
        ("fit_ovr", perceptron.fit_ovr,
         [v(4, 3), v(2, 4), v(4), np.zeros(4, dtype=np.uint8), v(2, 3), v(2), v(2, 3),
          np.zeros((2, 4), dtype=np.intp), state, np.zeros(2, dtype=np.uint64), v(2), v(2),
          1, 0, 1e-4, 0.15, 1.0, True, 1e-3, 5, False, False, 1]),
    ]


CASES = [(name, entry, args, i) for name, entry, args in _calls()
         for i, a in enumerate(args) if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("name, entry, args, i", CASES,
                         ids=[f"{c[0]}-arg{c[3]}" for c in CASES])
def test_none_for_an_array_raises(name, entry, args, i):
    args = list(args)
    args[i] = None
    with pytest.raises(TypeError):
        entry(*args)


@pytest.mark.parametrize("name, entry, args", _calls(), ids=[c[0] for c in _calls()])
def test_the_valid_calls_run(name, entry, args):
    entry(*args)
