"""Fully connected layer entry points (cores in linear.pxd)."""
from cython cimport floating

from fastnn._kernels.parallel cimport blas_threads_enter, blas_threads_exit


def linear_forward(const floating[:, ::1] x not None,  # IN  (n, n_in)
                   const floating[:, ::1] w not None,  # IN  (n_in, n_out)
                   const floating[::1] b,              # IN  (n_out,) or None
                   floating[:, ::1] y not None,        # OUT (n, n_out)
                   int n_threads):
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    cdef const floating* b_ptr = NULL
    if w.shape[0] != n_in:
        raise ValueError(f"linear_forward: x has {n_in} columns but w has {w.shape[0]} rows")
    if b is not None and b.shape[0] != n_out:
        raise ValueError(f"linear_forward: w has {n_out} columns but b has {b.shape[0]} "
                         "elements")
    if y.shape[0] != n or y.shape[1] != n_out:
        raise ValueError(f"linear_forward: the output is ({n}, {n_out}) but y is "
                         f"({y.shape[0]}, {y.shape[1]})")
    if n == 0 or n_out == 0:
        return
    if b is not None:
        b_ptr = &b[0]
    blas_threads_enter(n_threads, <double>n * n_in * n_out)
    try:
        with nogil:
            linear_forward_core(&x[0, 0], &w[0, 0], b_ptr, &y[0, 0], n, n_in, n_out,
                                n_threads)
    finally:
        blas_threads_exit()


def linear_backward(const floating[:, ::1] x not None,   # IN  (n, n_in)
                    const floating[:, ::1] w not None,   # IN  (n_in, n_out)
                    const floating[:, ::1] dy not None,  # IN  (n, n_out)
                    floating[:, ::1] dx,                 # OUT (n, n_in), or None to skip it
                    floating[:, ::1] dw not None,        # OUT (n_in, n_out)
                    floating[::1] db,                    # OUT (n_out,), or None to skip it
                    int n_threads):
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    cdef floating* dx_ptr = NULL
    cdef floating* db_ptr = NULL
    if w.shape[0] != n_in:
        raise ValueError(f"linear_backward: x has {n_in} columns but w has {w.shape[0]} rows")
    if dy.shape[0] != n or dy.shape[1] != n_out:
        raise ValueError(f"linear_backward: dy must be ({n}, {n_out}), got ({dy.shape[0]}, "
                         f"{dy.shape[1]})")
    if dx is not None and (dx.shape[0] != n or dx.shape[1] != n_in):
        raise ValueError(f"linear_backward: dx must be ({n}, {n_in}), got ({dx.shape[0]}, "
                         f"{dx.shape[1]})")
    if dw.shape[0] != n_in or dw.shape[1] != n_out:
        raise ValueError(f"linear_backward: dw must be ({n_in}, {n_out}), got "
                         f"({dw.shape[0]}, {dw.shape[1]})")
    if db is not None and db.shape[0] != n_out:
        raise ValueError(f"linear_backward: db must have {n_out} elements, got {db.shape[0]}")
    if n_out == 0:
        return
    if dx is not None and n > 0 and n_in > 0:
        dx_ptr = &dx[0, 0]
    if db is not None:
        db_ptr = &db[0]
    blas_threads_enter(n_threads, <double>n * n_in * n_out)
    try:
        with nogil:
            # an empty x or w is never dereferenced: the cores skip zero-sized products
            linear_backward_core(&x[0, 0] if n > 0 and n_in > 0 else NULL,
                                 &w[0, 0] if n_in > 0 else NULL,
                                 &dy[0, 0] if n > 0 else NULL,
                                 dx_ptr, &dw[0, 0] if n_in > 0 else NULL, db_ptr,
                                 n, n_in, n_out, n_threads)
    finally:
        blas_threads_exit()


def _product_parts(int m, int n, int k, int n_threads):
    """How many parts a kernel at n_threads cuts a product C (m, n) = A (m, k) @ B into
    (blas.pxd's gemm_parts; tests only)."""
    blas_threads_enter(n_threads, <double>m * n * k)
    try:
        return gemm_parts(m, n, k, n_threads)
    finally:
        blas_threads_exit()
