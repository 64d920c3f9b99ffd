# Elementwise activation cores, shared by the `def` entry points of activations.pyx and
# by the compiled training step, so that both paths do the very same arithmetic.
from cython cimport floating
from cython.parallel cimport prange

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, part_start, threads_for

cdef extern from "fastnn_exp.h" nogil:
    float fastnn_sigmoidf(float x)
    double fastnn_sigmoid(double x)
    float fastnn_tanhf(float x)
    double fastnn_tanh(double x)

cdef enum Activation:
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_SIGMOID = 2
    ACT_TANH = 3


cdef inline floating sigmoid_scalar(floating x) noexcept nogil:
    # inline and branch-free (csrc/fastnn_exp.h), so loops over it vectorise
    if floating is float:
        return fastnn_sigmoidf(x)
    else:
        return fastnn_sigmoid(x)


cdef inline floating activate(int kind, floating x) noexcept nogil:
    if kind == ACT_RELU:
        # not (x <= 0) keeps NaN visible, as np.maximum and torch.relu do, with a single
        # comparison, so the loop becomes a vector select
        return x if not (x <= 0) else 0
    if kind == ACT_SIGMOID:
        return sigmoid_scalar(x)
    if kind == ACT_TANH:
        if floating is float:
            return fastnn_tanhf(x)
        else:
            return fastnn_tanh(x)
    return x


cdef inline void activation_forward_range(int kind, const floating* x, floating* y,
                                          Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # One loop per kind, so each inner loop is branch-free.
    cdef Py_ssize_t i
    if kind == ACT_RELU:
        for i in range(lo, hi):
            y[i] = activate(ACT_RELU, x[i])
    elif kind == ACT_SIGMOID:
        for i in range(lo, hi):
            y[i] = activate(ACT_SIGMOID, x[i])
    elif kind == ACT_TANH:
        for i in range(lo, hi):
            y[i] = activate(ACT_TANH, x[i])
    else:
        for i in range(lo, hi):
            y[i] = x[i]


cdef inline void activation_forward_n(int kind, const floating* x, floating* y,
                                      Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t c
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    if t == 1:          # no OpenMP region: see common.pxd
        activation_forward_range(kind, x, y, 0, n)
        return
    for c in prange(t, schedule="static", num_threads=t):
        activation_forward_range(kind, x, y, part_start(n, t, c), part_start(n, t, c + 1))


cdef inline void activation_backward_range(int kind, const floating* x, const floating* y,
                                           const floating* dy, floating* dx,
                                           Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d
    if kind == ACT_RELU:
        for i in range(lo, hi):
            # both loads up front: a select, not a branch, so the loop vectorises
            d = dy[i]
            dx[i] = d if x[i] > 0 else 0
    elif kind == ACT_SIGMOID:
        for i in range(lo, hi):
            dx[i] = dy[i] * y[i] * (1 - y[i])
    elif kind == ACT_TANH:
        for i in range(lo, hi):
            dx[i] = dy[i] * (1 - y[i] * y[i])
    else:
        for i in range(lo, hi):
            dx[i] = dy[i]


cdef inline void activation_backward_n(int kind, const floating* x, const floating* y,
                                       const floating* dy, floating* dx,
                                       Py_ssize_t n, int n_threads) noexcept nogil:
    """x may be NULL for sigmoid and tanh, y may be NULL for ReLU."""
    cdef Py_ssize_t c
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    if t == 1:
        activation_backward_range(kind, x, y, dy, dx, 0, n)
        return
    for c in prange(t, schedule="static", num_threads=t):
        activation_backward_range(kind, x, y, dy, dx, part_start(n, t, c),
                                  part_start(n, t, c + 1))
