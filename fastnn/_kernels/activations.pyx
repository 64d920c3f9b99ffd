"""Elementwise activations and their gradients.

Every entry point takes flat C-contiguous arrays of one dtype: ops.py converts at the
boundary. # IN arrays are read, # OUT arrays are written, nothing is allocated here.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, tanh, tanhf

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


cdef inline floating sigmoid_scalar(floating x) noexcept nogil:
    # exp of a negative number only: no overflow for any finite x.
    cdef floating e
    if floating is float:
        if x >= 0:
            return 1.0 / (1.0 + expf(-x))
        e = expf(x)
    else:
        if x >= 0:
            return 1.0 / (1.0 + exp(-x))
        e = exp(x)
    return e / (1.0 + e)


cdef inline floating tanh_scalar(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating relu_scalar(floating x) noexcept nogil:
    # x > 0 is false for NaN, so NaN would become 0; keep it visible instead.
    return x if x > 0 or x != x else 0


def sigmoid(const floating[::1] x,     # IN
            floating[::1] out,         # OUT
            int n_threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        out[i] = sigmoid_scalar(x[i])


def tanh_forward(const floating[::1] x,   # IN
                 floating[::1] out,       # OUT
                 int n_threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        out[i] = tanh_scalar(x[i])


def relu(const floating[::1] x,   # IN
         floating[::1] out,       # OUT
         int n_threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        out[i] = relu_scalar(x[i])


def sigmoid_backward(const floating[::1] y,    # IN  forward output
                     const floating[::1] dy,   # IN
                     floating[::1] dx,         # OUT
                     int n_threads):
    cdef Py_ssize_t i, n = y.shape[0]
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        dx[i] = dy[i] * y[i] * (1 - y[i])


def tanh_backward(const floating[::1] y,    # IN  forward output
                  const floating[::1] dy,   # IN
                  floating[::1] dx,         # OUT
                  int n_threads):
    cdef Py_ssize_t i, n = y.shape[0]
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        dx[i] = dy[i] * (1 - y[i] * y[i])


def relu_backward(const floating[::1] x,    # IN  forward input
                  const floating[::1] dy,   # IN
                  floating[::1] dx,         # OUT
                  int n_threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        dx[i] = dy[i] if x[i] > 0 else 0
