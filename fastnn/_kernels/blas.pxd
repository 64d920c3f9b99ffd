# The one row-major GEMM shim over scipy's BLAS; no kernel calls BLAS any other way.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

from fastnn._kernels.parallel cimport (
    blas_parallel_product_now, blas_threads_now, chunk_fn, gemm_split_part, pool_for_brief,
    pool_for_linger)


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    A row-major matrix is its column-major transpose, so we ask BLAS for
    C^T = op(B)^T @ op(A)^T and swap the roles of A and B.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # BLAS would do this too, but some builds reject the zero leading dimensions.
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    if lda < 1:
        lda = 1
    if ldb < 1:
        ldb = 1
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)


# ---- one product split between threads -------------------------------------------------
# While BLAS is on one thread (every product of the kernel is small: parallel.pyx), a
# product of at least twice gemm_split_part() multiply-adds is cut into parts of rows (or
# of columns) of C, one per thread, and the pool's threads multiply the parts at once,
# each part a BLAS call of its own. Measured on a 2-core AMD EPYC: a batch's five
# products of the digits MLP (the largest 200 x 64 x 100) took 0.55-0.61x the one-thread
# time in two parts, OpenBLAS's own two threads 0.88-1.01x; an MLPClassifier epoch on
# digits took 0.63-0.69 against 0.72-0.83 ms. Parts of 200k multiply-adds did not pay.
# Much of that gain is the parts' size, not the second thread: OpenBLAS multiplies
# matrices this small without packing them, and on the caller alone the two parts of
# 200 x 64 x 100, one after the other, took 29.5 against 33 us for the whole. The
# training step runs its parts with the pool's worker or without it, whichever it
# measures faster (csrc/fastnn_pool.h), and on one thread such a product (under the
# size from which BLAS may use threads) is cut in two parts all the same.
# A part's bits depend only on the shapes and the number of parts, which depends only on
# the shapes and the thread count: results stay the same at a given thread count.

ctypedef struct GemmSplit:
    bint trans_a, trans_b, by_rows
    int m, n, k, lda, ldb, ldc
    double alpha, beta
    const void* a
    const void* b
    void* c


cdef inline void gemm_part(const GemmSplit* s, floating* c, long lo,
                           long hi) noexcept nogil:
    # rows [lo, hi) of op(A) and C, or columns [lo, hi) of op(B) and C
    cdef const floating* a = <const floating*>s.a
    cdef const floating* b = <const floating*>s.b
    if s.by_rows:
        gemm(s.trans_a, s.trans_b, <int>(hi - lo), s.n, s.k, <floating>s.alpha,
             a + (lo if s.trans_a else lo * s.lda), s.lda, b, s.ldb,
             <floating>s.beta, c + lo * s.ldc, s.ldc)
    else:
        gemm(s.trans_a, s.trans_b, s.m, <int>(hi - lo), s.k, <floating>s.alpha,
             a, s.lda, b + (lo * s.ldb if s.trans_b else lo), s.ldb,
             <floating>s.beta, c + lo, s.ldc)


cdef inline void gemm_part_float(void* arg, long lo, long hi) noexcept nogil:
    cdef GemmSplit* s = <GemmSplit*>arg
    gemm_part(s, <float*>s.c, lo, hi)


cdef inline void gemm_part_double(void* arg, long lo, long hi) noexcept nogil:
    cdef GemmSplit* s = <GemmSplit*>arg
    gemm_part(s, <double*>s.c, lo, hi)


# A product of fewer than GEMM_FEW_ROWS rows does that few multiply-adds per element of
# op(B) it reads, so reading op(B) from the cache is its time, and two threads reading
# half of it each take about half. On threads it counts as a product of GEMM_FEW_ROWS
# rows, and its parts run through pool_for_brief. Measured on a 2-core AMD EPYC, 2
# threads: one-row predicts of 784-256-128-10 one after another took 9.7-11.6 us with
# the first product in two parts against 13.9-17.4 us whole; through fastnn.ops (the
# Python call included) 1 x 784 x 128 took 8.7 against 10.6 us, 1 x 512 x 512 16.2-16.7
# against 24.3 us. Products with op(B) of 128-196 kB (1 x 256 x 128, 1 x 784 x 64) gained
# nothing and stay whole. The gain is the second core's: run one after the other on the
# caller, the two parts gave the same predict in 14.2 us, so one thread keeps it whole.
cdef enum:
    GEMM_FEW_ROWS = 8


cdef inline int gemm_parts(int m, int n, int k, int n_threads) noexcept nogil:
    """How many parts gemm_threads cuts C (m, n) = op(A) (m, k) @ op(B) into: one per
    thread (a product of fewer than GEMM_FEW_ROWS rows counted as one of that many), and
    on one thread two for a product under blas_parallel_product() (the parts' size is
    the gain there, see above)."""
    cdef double size = <double>m * n * k, part = gemm_split_part()
    cdef int parts
    if part <= 0 or m <= 0 or blas_threads_now() != 1:
        return 1
    if n_threads < 2:
        if size < 2.0 * part or size >= blas_parallel_product_now():
            return 1
        return min(2, max(m, n))
    size = <double>max(m, GEMM_FEW_ROWS) * n * k
    if size < 2.0 * part:
        return 1
    parts = <int>(size / part)
    return min(parts, n_threads, max(m, n))


cdef inline void gemm_split_set(GemmSplit* s, bint trans_a, bint trans_b, int m, int n,
                                int k, double alpha, const void* a, int lda,
                                const void* b, int ldb, double beta, void* c,
                                int ldc) noexcept nogil:
    """Describe C = alpha * op(A) @ op(B) + beta * C for parts of rows (m >= n) or of
    columns of C."""
    s.trans_a = trans_a
    s.trans_b = trans_b
    s.by_rows = m >= n
    s.m = m
    s.n = n
    s.k = k
    s.lda = lda
    s.ldb = ldb
    s.ldc = ldc
    s.alpha = alpha
    s.beta = beta
    s.a = a
    s.b = b
    s.c = c


cdef inline void gemm_split_run(chunk_fn fn, void* arg, const GemmSplit* s, int parts,
                                int n_threads) noexcept nogil:
    """fn(arg, lo, hi) over the parts of s's rows or columns, on up to n_threads threads
    (a product of few rows through pool_for_brief, see gemm_parts)."""
    cdef long size = s.m if s.by_rows else s.n
    cdef long chunk = (size + parts - 1) // parts
    n_threads = min(parts, n_threads)
    if s.m < GEMM_FEW_ROWS:
        pool_for_brief(fn, arg, size, chunk, n_threads)
    else:
        pool_for_linger(fn, arg, size, chunk, n_threads)


cdef inline void gemm_threads(bint trans_a, bint trans_b, int m, int n, int k,
                              floating alpha, const floating* a, int lda,
                              const floating* b, int ldb,
                              floating beta, floating* c, int ldc,
                              int n_threads) noexcept nogil:
    """gemm, on up to n_threads threads while BLAS runs on one (see above)."""
    cdef GemmSplit s
    cdef int parts = gemm_parts(m, n, k, n_threads)
    if parts < 2 or k <= 0:
        gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    gemm_split_set(&s, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    gemm_split_run(gemm_part_float if floating is float else gemm_part_double, &s, &s,
                   parts, n_threads)
