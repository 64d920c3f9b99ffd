"""Fully connected layer: y = x @ w + b and its gradients, through the BLAS shim.

w is (n_in, n_out), the transpose of PyTorch's layout, so every product is a plain
row-major GEMM with no copy.
"""
from cython cimport floating
from cython.parallel cimport prange

from fastnn._kernels.blas cimport gemm
from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


cdef void column_sums(const floating[:, ::1] a, floating[::1] out, int n_threads) noexcept nogil:
    """out[k] = sum_i a[i, k], accumulated in double, rows in order (thread-count independent)."""
    cdef Py_ssize_t i, k, n = a.shape[0], n_out = a.shape[1]
    cdef int t = threads_for(n * n_out, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double s
    for k in prange(n_out, schedule="static", num_threads=t):
        s = 0
        for i in range(n):
            s = s + a[i, k]
        out[k] = <floating>s


def linear_forward(const floating[:, ::1] x,   # IN  (n, n_in)
                   const floating[:, ::1] w,   # IN  (n_in, n_out)
                   const floating[::1] b,      # IN  (n_out,) or None
                   floating[:, ::1] y,         # OUT (n, n_out)
                   int n_threads):
    cdef Py_ssize_t i, k, n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    cdef bint has_bias = b is not None
    if n == 0 or n_out == 0:
        return
    with nogil:
        # Start from the bias in every row, then accumulate the product onto it.
        for i in range(n):
            for k in range(n_out):
                y[i, k] = b[k] if has_bias else 0
        gemm(False, False, <int>n, <int>n_out, <int>n_in,
             <floating>1, &x[0, 0], <int>n_in, &w[0, 0], <int>n_out,
             <floating>1, &y[0, 0], <int>n_out)


def linear_backward(const floating[:, ::1] x,    # IN  (n, n_in)
                    const floating[:, ::1] w,    # IN  (n_in, n_out)
                    const floating[:, ::1] dy,   # IN  (n, n_out)
                    floating[:, ::1] dx,         # OUT (n, n_in), or None to skip it
                    floating[:, ::1] dw,         # OUT (n_in, n_out)
                    floating[::1] db,            # OUT (n_out,), or None to skip it
                    int n_threads):
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    cdef bint want_dx = dx is not None, want_db = db is not None
    if n_in == 0 or n_out == 0:
        if want_db and n_out > 0:
            with nogil:
                column_sums(dy, db, n_threads)
        return
    with nogil:
        if want_dx and n > 0:
            # dx = dy @ w.T
            gemm(False, True, <int>n, <int>n_in, <int>n_out,
                 <floating>1, &dy[0, 0], <int>n_out, &w[0, 0], <int>n_out,
                 <floating>0, &dx[0, 0], <int>n_in)
        # dw = x.T @ dy  (k = n = 0 gives zeros)
        gemm(True, False, <int>n_in, <int>n_out, <int>n,
             <floating>1, &x[0, 0], <int>n_in, &dy[0, 0], <int>n_out,
             <floating>0, &dw[0, 0], <int>n_out)
        if want_db:
            column_sums(dy, db, n_threads)
