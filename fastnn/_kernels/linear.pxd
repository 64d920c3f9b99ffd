# Fully connected layer cores: y = x @ w + b and its gradients, through the BLAS shim.
# w is (n_in, n_out), the transpose of PyTorch's layout, so every product is a plain
# row-major GEMM with no copy.
from cython cimport floating
from cython.parallel cimport prange

from fastnn._kernels.blas cimport gemm
from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


cdef inline void column_sums(const floating* a, floating* out, Py_ssize_t n, Py_ssize_t d,
                             int n_threads) noexcept nogil:
    """out[j] = sum_i a[i, j], in double, rows in order (independent of the thread count)."""
    cdef Py_ssize_t i, j
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double s
    for j in prange(d, schedule="static", num_threads=t):
        s = 0
        for i in range(n):
            s = s + a[i * d + j]
        out[j] = <floating>s


cdef inline void linear_forward_core(const floating* x, const floating* w,
                                     const floating* b,      # NULL for no bias
                                     floating* y, Py_ssize_t n, Py_ssize_t n_in,
                                     Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i, k
    if n == 0 or n_out == 0:
        return
    # Start from the bias in every row, then accumulate the product onto it.
    for i in range(n):
        for k in range(n_out):
            y[i * n_out + k] = b[k] if b != NULL else 0
    gemm(False, False, <int>n, <int>n_out, <int>n_in, <floating>1, x, <int>n_in,
         w, <int>n_out, <floating>1, y, <int>n_out)


cdef inline void linear_backward_core(const floating* x, const floating* w, const floating* dy,
                                      floating* dx,   # NULL to skip (first layer)
                                      floating* dw,
                                      floating* db,   # NULL when there is no bias
                                      Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                      int n_threads) noexcept nogil:
    if n_out == 0:
        return
    if n_in > 0:
        if dx != NULL and n > 0:
            # dx = dy @ w.T
            gemm(False, True, <int>n, <int>n_in, <int>n_out, <floating>1, dy, <int>n_out,
                 w, <int>n_out, <floating>0, dx, <int>n_in)
        # dw = x.T @ dy  (zeros for an empty batch)
        gemm(True, False, <int>n_in, <int>n_out, <int>n, <floating>1, x, <int>n_in,
             dy, <int>n_out, <floating>0, dw, <int>n_out)
    if db != NULL:
        column_sums(dy, db, n, n_out, n_threads)
