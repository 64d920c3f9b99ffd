# Fully connected layer cores: y = x @ w + b and its gradients, through the BLAS shim.
# w is (n_in, n_out), the transpose of PyTorch's layout, so every product is a plain
# row-major GEMM with no copy.
from cython cimport floating
from cython.parallel cimport prange

from fastnn._kernels.activations cimport (
    ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_TANH, activate, activation_forward_range)
from fastnn._kernels.blas cimport (
    GemmSplit, gemm_part, gemm_parts, gemm_split_run, gemm_split_set, gemm_threads)
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


# ---- the forward pass: the product, then bias and activation in one pass ---------------
# y = x @ w (BLAS), then out = act(y + b) row by row while the rows are in cache: with
# act the identity and out = y, the layer alone; with an activation, the layer and the
# activation after it, whose input y + b is then not kept (ReLU's gradient reads its
# output instead: out > 0 exactly where y + b > 0, NaN included). Either way each
# element gets the same two roundings, so the fused pair and the two layers run one
# after the other give the same bits. Where gemm_threads cuts the product into parts of
# rows, each part's thread also runs the epilogue of its rows.

cdef inline void bias_act_row(const floating* y, const floating* b, floating* out, int act,
                              Py_ssize_t n_out) noexcept nogil:
    # one loop per kind, so each inner loop is branch-free and vectorises
    cdef Py_ssize_t k
    if act == ACT_RELU:
        for k in range(n_out):
            out[k] = activate(ACT_RELU, y[k] + b[k])
    elif act == ACT_SIGMOID:
        for k in range(n_out):
            out[k] = activate(ACT_SIGMOID, y[k] + b[k])
    elif act == ACT_TANH:
        for k in range(n_out):
            out[k] = activate(ACT_TANH, y[k] + b[k])
    else:
        for k in range(n_out):
            out[k] = y[k] + b[k]


cdef inline void bias_act_rows(floating* y, const floating* b, floating* out, int act,
                               Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n_out) noexcept nogil:
    """out = act(y + b) over rows [lo, hi); b may be NULL, out may be y."""
    cdef Py_ssize_t i
    if b == NULL:
        if act != ACT_IDENTITY or out != y:
            activation_forward_range(act, y, out, lo * n_out, hi * n_out)
        return
    for i in range(lo, hi):
        bias_act_row(y + i * n_out, b, out + i * n_out, act, n_out)


ctypedef struct LinearRows:
    GemmSplit g
    const void* bias
    void* out
    int act


cdef inline void linear_rows(const LinearRows* s, floating* y, long lo, long hi) noexcept nogil:
    gemm_part(&s.g, y, lo, hi)
    bias_act_rows(y, <const floating*>s.bias, <floating*>s.out, s.act, lo, hi, s.g.n)


cdef inline void linear_rows_float(void* arg, long lo, long hi) noexcept nogil:
    cdef LinearRows* s = <LinearRows*>arg
    linear_rows(s, <float*>s.g.c, lo, hi)


cdef inline void linear_rows_double(void* arg, long lo, long hi) noexcept nogil:
    cdef LinearRows* s = <LinearRows*>arg
    linear_rows(s, <double*>s.g.c, lo, hi)


cdef inline void linear_act_forward_core(const floating* x, const floating* w,
                                         const floating* b,      # NULL for no bias
                                         floating* y, floating* out, int act,
                                         Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                         int n_threads) noexcept nogil:
    """out = act(x @ w + b), y (n, n_out) holding x @ w; act and out = y for the layer
    alone (activations.pxd's kinds)."""
    cdef LinearRows s
    cdef int parts
    if n == 0 or n_out == 0:
        return
    parts = gemm_parts(<int>n, <int>n_out, <int>n_in, n_threads)
    if parts < 2 or n_in <= 0 or n < n_out:     # one part, or parts of columns
        gemm_threads(False, False, <int>n, <int>n_out, <int>n_in, <floating>1, x,
                     <int>n_in, w, <int>n_out, <floating>0, y, <int>n_out, n_threads)
        bias_act_rows(y, b, out, act, 0, n, n_out)
        return
    gemm_split_set(&s.g, False, False, <int>n, <int>n_out, <int>n_in, 1, x, <int>n_in,
                   w, <int>n_out, 0, y, <int>n_out)
    s.bias = b
    s.out = out
    s.act = act
    gemm_split_run(linear_rows_float if floating is float else linear_rows_double, &s,
                   &s.g, parts, n_threads)


cdef inline void linear_forward_core(const floating* x, const floating* w,
                                     const floating* b,      # NULL for no bias
                                     floating* y, Py_ssize_t n, Py_ssize_t n_in,
                                     Py_ssize_t n_out, int n_threads) noexcept nogil:
    linear_act_forward_core(x, w, b, y, y, ACT_IDENTITY, n, n_in, n_out, n_threads)


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
