"""Elementwise activations and their gradients (cores in activations.pxd).

Every entry point takes flat C-contiguous arrays of one dtype: ops.py converts at the
boundary. # IN arrays are read, # OUT arrays are written, nothing is allocated here.
"""
from cython cimport floating


def forward(int kind,                        # ACT_RELU, ACT_SIGMOID or ACT_TANH
            const floating[::1] x not None,  # IN
            floating[::1] y not None,        # OUT
            int n_threads):
    cdef Py_ssize_t n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"forward: x has {n} elements but y has {y.shape[0]}")
    if n == 0:
        return
    with nogil:
        activation_forward_n(kind, &x[0], &y[0], n, n_threads)


def backward(int kind,
             const floating[::1] a not None,   # IN  forward input x (ReLU) or output y (sigmoid, tanh)
             const floating[::1] dy not None,  # IN
             floating[::1] dx not None,        # OUT
             int n_threads):
    cdef Py_ssize_t n = a.shape[0]
    if dy.shape[0] != n or dx.shape[0] != n:
        raise ValueError(f"backward: a has {n} elements, dy {dy.shape[0]} and dx "
                         f"{dx.shape[0]}; all must have the same size")
    if n == 0:
        return
    with nogil:
        activation_backward_n(kind, &a[0], &a[0], &dy[0], &dx[0], n, n_threads)


RELU = ACT_RELU
SIGMOID = ACT_SIGMOID
TANH = ACT_TANH
