"""What the build knows about OpenMP, and the thread count of the BLAS the kernels call.

While a kernel that multiplies matrices runs, scipy's BLAS may use at most the thread
count the kernel was given (fastnn.set_num_threads), and one thread when every product
is small: splitting a product of a few million multiply-adds over two threads costs more
in hand-offs than it saves, and the second BLAS thread then spins beside the rest of
the step. Enter and exit are called with the GIL held, which serialises them; the
first kernel in sets the count and the last one out puts the previous count back, so
threads training or predicting at once never leave BLAS changed.

The optimizer step, between the products, shares its chunks with a pool of sleeping
workers (csrc/fastnn_pool.h), while BLAS's threads wait; and while BLAS is on one thread,
the pool's threads share the larger products between them (blas.pxd). The pool is
defined here, once for the process.
"""
from libc.stdint cimport int64_t, uint64_t

import numpy as np
import scipy.linalg.cython_blas as _cython_blas

cdef extern from "fastnn_omp.h":
    int fastnn_openmp_enabled() nogil

cdef extern from "fastnn_cpu.h":
    int fastnn_cpu_has_avx2() nogil

cdef extern from "fastnn_pool.h":
    void fastnn_pool_for(chunk_fn fn, void* arg, long n, long chunk,
                         int n_threads) noexcept nogil
    void fastnn_pool_for_linger(chunk_fn fn, void* arg, long n, long chunk,
                                int n_threads, int linger) noexcept nogil
    void fastnn_pool_for_brief(chunk_fn fn, void* arg, long n, long chunk,
                               int n_threads) noexcept nogil
    unsigned long fastnn_pool_thread_id() noexcept nogil
    void fastnn_pool_pause_us(unsigned int us) noexcept nogil
    void fastnn_pool_flag_raise(int* flag) noexcept nogil
    int FASTNN_POOL_TUNING
    int fastnn_pool_solo_forced
    long fastnn_pool_tuning_start(double* tuning) noexcept nogil
    void fastnn_pool_tuning_stop(double* tuning, long start, double units) noexcept nogil

cdef extern from "fastnn_blas_threads.h":
    int fastnn_blas_bind(const char* module_path)
    int fastnn_blas_get_threads() nogil
    void fastnn_blas_set_threads(int n) nogil

# Below this many multiply-adds in its largest product, a kernel keeps BLAS on one
# thread. Measured on 2 cores, products alone disagree by shape: forward and backward
# of 32x256x128 (1.0M) take 0.77x the one-thread time on two threads, those of
# 200x64x100 (1.3M) 0.95x. What decided is whole epochs, where the second BLAS thread
# also spins beside the rest of the step: the digits MLP (largest product 1.3M) ran
# 1.04-1.38 ms per epoch on one BLAS thread against 1.38-1.46 ms on two.
cdef double BLAS_PARALLEL_PRODUCT = 2e6

cdef bint _bound = fastnn_blas_bind(_cython_blas.__file__.encode()) != 0
cdef int _depth = 0
cdef int _saved = 0
cdef bint _changed = False


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fastnn_openmp_enabled())


def cpu_has_avx2():
    """True when the CPU, and the OS, can run AVX2 code."""
    return bool(fastnn_cpu_has_avx2())


def blas_thread_control():
    """True when fastnn found the thread setter of the BLAS it calls."""
    return bool(_bound)


def blas_parallel_product():
    """Multiply-adds in a kernel's largest product from which BLAS may use several threads."""
    return BLAS_PARALLEL_PRODUCT


def blas_threads():
    """The BLAS library's current thread count (0 when unknown)."""
    return fastnn_blas_get_threads()


cdef void pool_for(chunk_fn fn, void* arg, long n, long chunk, int n_threads) noexcept nogil:
    fastnn_pool_for(fn, arg, n, chunk, n_threads)


cdef void pool_for_linger(chunk_fn fn, void* arg, long n, long chunk,
                          int n_threads) noexcept nogil:
    fastnn_pool_for_linger(fn, arg, n, chunk, n_threads, 1)


cdef void pool_for_brief(chunk_fn fn, void* arg, long n, long chunk,
                         int n_threads) noexcept nogil:
    fastnn_pool_for_brief(fn, arg, n, chunk, n_threads)


cdef int blas_threads_now() noexcept nogil:
    return fastnn_blas_get_threads() if _bound else 0


cdef double blas_parallel_product_now() noexcept nogil:
    return BLAS_PARALLEL_PRODUCT


# From two parts of this many multiply-adds, a product is split between the pool's
# threads while BLAS is on one thread (blas.pxd).
cdef double GEMM_SPLIT_PART = 400000


cdef double gemm_split_part() noexcept nogil:
    return GEMM_SPLIT_PART


def split_product_part():
    """Multiply-adds per part from which a product is split between fastnn's threads
    while BLAS runs on one (0: never)."""
    return GEMM_SPLIT_PART


def _set_gemm_split_part(double value):
    """Change the multiply-adds per part from which products are split; 0 splits none
    (for measuring where it should lie)."""
    global GEMM_SPLIT_PART
    GEMM_SPLIT_PART = value


cdef void pool_flag_raise(int* flag) noexcept nogil:
    fastnn_pool_flag_raise(flag)


assert FASTNN_POOL_TUNING == POOL_TUNING


cdef long pool_tuning_start(double* tuning) noexcept nogil:
    return fastnn_pool_tuning_start(tuning)


cdef void pool_tuning_stop(double* tuning, long start, double units) noexcept nogil:
    fastnn_pool_tuning_stop(tuning, start, units)


def _force_pool_solo(int way):
    """Make every tuned step run its lingering loops with the workers (0) or without
    them (1), or let the timing decide (-1); returns the previous setting (for tests and
    measurements)."""
    global fastnn_pool_solo_forced
    if way not in (-1, 0, 1):
        raise ValueError(f"way must be -1, 0 or 1, not {way}")
    previous = fastnn_pool_solo_forced
    fastnn_pool_solo_forced = way
    return previous


cdef int blas_threads_enter(int n_threads, double largest_product) noexcept:
    """Bound BLAS's threads for a kernel about to run; returns the count in force."""
    global _depth, _saved, _changed
    cdef int want
    if not _bound:
        return 0
    if _depth == 0:
        _saved = fastnn_blas_get_threads()
        want = n_threads if largest_product >= BLAS_PARALLEL_PRODUCT else 1
        if want < 1:
            want = 1
        _changed = 0 < want < _saved       # only ever fewer threads than BLAS has
        if _changed:
            fastnn_blas_set_threads(want)
    _depth += 1
    return fastnn_blas_get_threads()


cdef void blas_threads_exit() noexcept:
    global _depth, _changed
    if not _bound or _depth == 0:
        return
    _depth -= 1
    if _depth == 0 and _changed:
        fastnn_blas_set_threads(_saved)
        _changed = False


def run_with_blas_threads(int n_threads, double largest_product, fn):
    """Call fn() under the policy (for tests and for Python-side callers); returns
    (the BLAS thread count fn saw, fn's result)."""
    cdef int seen = blas_threads_enter(n_threads, largest_product)
    try:
        return seen, fn()
    finally:
        blas_threads_exit()


ctypedef struct _ChunkLog:
    int64_t* runs           # how many times each chunk ran
    uint64_t* runner        # the thread that ran it
    unsigned int pause_us


cdef void _log_chunk(void* arg, long lo, long hi) noexcept nogil:
    cdef _ChunkLog* log = <_ChunkLog*>arg
    cdef long i
    fastnn_pool_pause_us(log.pause_us)
    for i in range(lo, hi):
        log.runs[i] += 1
        log.runner[i] = fastnn_pool_thread_id()


def _pool_for_log(long n_chunks, int n_threads, unsigned int pause_us, bint linger=False,
                  bint brief=False):
    """Run the pool over n_chunks one-element chunks that each pause pause_us (tests
    only), its workers lingering after it if asked, or as a brief loop (pool_for_brief);
    returns how many times each chunk ran and how many threads ran chunks."""
    runs = np.zeros(n_chunks, dtype=np.int64)
    runner = np.zeros(n_chunks, dtype=np.uint64)
    if n_chunks == 0:
        return runs, 0
    cdef int64_t[::1] runs_view = runs
    cdef uint64_t[::1] runner_view = runner
    cdef _ChunkLog log
    log.runs = &runs_view[0]
    log.runner = &runner_view[0]
    log.pause_us = pause_us
    with nogil:
        if brief:
            pool_for_brief(_log_chunk, &log, n_chunks, 1, n_threads)
        elif linger:
            pool_for_linger(_log_chunk, &log, n_chunks, 1, n_threads)
        else:
            pool_for(_log_chunk, &log, n_chunks, 1, n_threads)
    return runs, len(np.unique(runner))


def _set_blas_threads_for_tests(int n):
    """Set the BLAS library's own thread count directly (tests only)."""
    fastnn_blas_set_threads(n)


def _set_blas_parallel_product(double value):
    """Change the one-thread threshold (for measuring where it should lie)."""
    global BLAS_PARALLEL_PRODUCT
    BLAS_PARALLEL_PRODUCT = value
