# Fully connected layer cores: y = x @ w + b and its gradients, through the BLAS shim.
# w is (n_in, n_out), the transpose of PyTorch's layout, so every product is a plain
# row-major GEMM with no copy.
from cython cimport floating
from cython.parallel cimport prange

from fastnn._kernels.blas cimport gemm_threads
from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


cdef enum:
    COLUMN_BLOCK = 64


cdef inline void column_block_sums(const floating* a, floating* out, Py_ssize_t n, Py_ssize_t d,
                                   Py_ssize_t j0, Py_ssize_t width) noexcept nogil:
    cdef double acc[COLUMN_BLOCK]
    cdef Py_ssize_t i, j
    for j in range(width):
        acc[j] = 0
    for i in range(n):              # row by row: contiguous loads, a vector loop
        for j in range(width):
            acc[j] += a[i * d + j0 + j]
    for j in range(width):
        out[j0 + j] = <floating>acc[j]


cdef inline void column_sums(const floating* a, floating* out, Py_ssize_t n, Py_ssize_t d,
                             int n_threads) noexcept nogil:
    """out[j] = sum_i a[i, j], in double, rows in order (independent of the thread count)."""
    cdef Py_ssize_t b, n_blocks = (d + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    if t == 1:          # no OpenMP region: see common.pxd
        for b in range(n_blocks):
            column_block_sums(a, out, n, d, b * COLUMN_BLOCK,
                              min(<Py_ssize_t>COLUMN_BLOCK, d - b * COLUMN_BLOCK))
    else:
        for b in prange(n_blocks, schedule="static", num_threads=t):
            column_block_sums(a, out, n, d, b * COLUMN_BLOCK,
                              min(<Py_ssize_t>COLUMN_BLOCK, d - b * COLUMN_BLOCK))


cdef inline void linear_forward_core(const floating* x, const floating* w,
                                     const floating* b,      # NULL for no bias
                                     floating* y, Py_ssize_t n, Py_ssize_t n_in,
                                     Py_ssize_t n_out, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, k
    if n == 0 or n_out == 0:
        return
    # Start from the bias in every row, then accumulate the product onto it.
    for i in range(n):
        for k in range(n_out):
            y[i * n_out + k] = b[k] if b != NULL else 0
    gemm_threads(False, False, <int>n, <int>n_out, <int>n_in, <floating>1, x, <int>n_in,
                 w, <int>n_out, <floating>1, y, <int>n_out, n_threads)


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
            gemm_threads(False, True, <int>n, <int>n_in, <int>n_out, <floating>1, dy,
                         <int>n_out, w, <int>n_out, <floating>0, dx, <int>n_in, n_threads)
        # dw = x.T @ dy  (zeros for an empty batch)
        gemm_threads(True, False, <int>n_in, <int>n_out, <int>n, <floating>1, x, <int>n_in,
                     dy, <int>n_out, <floating>0, dw, <int>n_out, n_threads)
    if db != NULL:
        column_sums(dy, db, n, n_out, n_threads)
