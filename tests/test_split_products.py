"""Products split between fastnn's threads while BLAS runs on one (blas.pxd).

Each part is a BLAS call of its own over a slice of rows (or columns) of the result, so
a split product is its parts' results side by side: the same bits every call at a given
thread count, the reference's values to rounding, and the compiled step and the
per-layer path still agree."""
import os
import sys
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn import ops, reference
from fastnn._kernels import parallel

from conftest import assert_close, normal, rtol_for
from test_compiled_step import _assert_identical, _data, _fit_both

pytestmark = pytest.mark.skipif(not parallel.blas_thread_control(),
                                reason="no thread setter found for scipy's BLAS")

POOL_BUILT = sys.platform.startswith("linux")     # elsewhere the pool runs serially
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
# the digits MLP's first layer at scikit-learn's batch of 200: 1.28M multiply-adds, two
# parts at two threads, and each half below the size that is split
N, N_IN, N_OUT = 200, 64, 100


@pytest.fixture
def two_threads(restore_threads):
    """fastnn at 2 threads and scipy's BLAS at 2 (as on a 2-core machine), then as before."""
    assert 2 * parallel.split_product_part() <= N * N_IN * N_OUT
    assert N * N_IN * N_OUT / 2 < 2 * parallel.split_product_part()
    before = parallel.blas_threads()
    parallel._set_blas_threads_for_tests(2)
    restore_threads.set_num_threads(2)
    yield restore_threads
    parallel._set_blas_threads_for_tests(before)


def _operands(dtype):
    return (normal((N, N_IN), dtype, "split-x"), normal((N_IN, N_OUT), dtype, "split-w"),
            normal(N_OUT, dtype, "split-b"), normal((N, N_OUT), dtype, "split-dy"))


def test_a_split_forward_is_its_row_halves_side_by_side(dtype, two_threads):
    x, w, b, _ = _operands(dtype)
    y = ops.linear_forward(x, w, b)
    np.testing.assert_array_equal(y, ops.linear_forward(x, w, b))
    two_threads.set_num_threads(1)
    halves = np.vstack([ops.linear_forward(x[:N // 2], w, b),
                        ops.linear_forward(x[N // 2:], w, b)])
    np.testing.assert_array_equal(y, halves)
    np.testing.assert_allclose(y, reference.linear_forward(x, w, b), rtol=rtol_for(dtype),
                               atol=rtol_for(dtype))


def test_a_split_backward_is_its_halves_side_by_side(dtype, two_threads):
    # dx = dy @ w.T (200 x 64) in halves of rows; dw = x.T @ dy (64 x 100), which has
    # fewer rows than columns, in halves of columns
    x, w, _, dy = _operands(dtype)
    dx, dw, db = ops.linear_backward(x, w, dy)
    two_threads.set_num_threads(1)
    top, bottom = (ops.linear_backward(x[rows], w, dy[rows])[0]
                   for rows in (slice(0, N // 2), slice(N // 2, N)))
    left, right = (ops.linear_backward(x, w[:, cols], dy[:, cols])[1]
                   for cols in (slice(0, N_OUT // 2), slice(N_OUT // 2, N_OUT)))
    np.testing.assert_array_equal(dx, np.vstack([top, bottom]))
    np.testing.assert_array_equal(dw, np.hstack([left, right]))
    for got, want in zip((dx, dw, db), reference.linear_backward(x, w, dy)):
        np.testing.assert_allclose(got, want, rtol=rtol_for(dtype), atol=rtol_for(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_and_per_layer_agree_when_products_are_split(dtype, two_threads):
    X, y = _data(2 * N + 17, N_IN, 10, dtype, "labels")      # a short last batch too

    def make():
        return fastnn.Sequential(fastnn.Linear(N_IN, N_OUT), fastnn.ReLU(),
                                 fastnn.Linear(N_OUT, 10), dtype=dtype, seed=5)

    fast, slow, hf, hs = _fit_both(make, X, y, epochs=2, batch_size=N, l2=1e-4)
    _assert_identical(fast, slow, hf, hs)
    again = make()
    again.fit(X, y, epochs=2, batch_size=N, l2=1e-4)
    np.testing.assert_array_equal(again._flat_params, fast._flat_params)


def test_python_threads_splitting_at_once_each_get_their_result(two_threads):
    x, w, b, _ = _operands(np.float32)
    expected = ops.linear_forward(x, w, b)
    inputs = [(x * s, w, b) for s in (1.0, 0.5, 2.0, -1.0)]
    wanted = [ops.linear_forward(*args) for args in inputs]
    errors = []
    start = threading.Barrier(len(inputs))

    def worker(i):
        start.wait()
        for _ in range(50):
            if not np.array_equal(ops.linear_forward(*inputs[i]), wanted[i]):
                errors.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(ops.linear_forward(x, w, b), expected)


@pytest.mark.parametrize("n_chunks", [1, 2, 37])
def test_lingering_loops_run_every_chunk_once(n_chunks):
    for linger in (True, True, False, True):
        runs, threads = parallel._pool_for_log(n_chunks, 2, 200, linger=linger)
        assert (runs == 1).all()
        assert threads <= min(2, n_chunks)


@pytest.mark.skipif(not POOL_BUILT or CPUS < 2, reason="needs the pool and 2 CPUs")
def test_a_lingering_worker_goes_to_sleep():
    # it polls for at most FASTNN_POOL_LINGER_NS (0.3 ms) after the loop: over the next
    # 0.2 s the process uses next to no CPU, where a worker that kept polling would use
    # all 0.2 s of one
    parallel._pool_for_log(37, 2, 100, linger=True)
    before = time.process_time()
    time.sleep(0.2)
    assert time.process_time() - before < 0.05


def test_a_brief_loop_long_after_the_last_runs_on_the_caller():
    for n_chunks in (1, 2, 37):
        time.sleep(0.002)          # well past FASTNN_POOL_LINGER_NS (0.3 ms)
        runs, threads = parallel._pool_for_log(n_chunks, 2, 100, brief=True)
        assert (runs == 1).all()
        assert threads == 1


@pytest.mark.skipif(not POOL_BUILT or CPUS < 2, reason="needs the pool and 2 CPUs")
def test_brief_loops_one_after_another_share_their_chunks():
    time.sleep(0.002)
    assert parallel._pool_for_log(4, 2, 100, brief=True)[1] == 1
    # right after it: each chunk pauses 2 ms, so a woken worker joins before the caller
    # has run all four
    runs, threads = parallel._pool_for_log(4, 2, 2000, brief=True)
    assert (runs == 1).all()
    assert threads == 2


ROW_IN, ROW_OUT = 784, 256      # one row: 200k multiply-adds, counted as 8 rows' 1.6M


def test_a_product_of_few_rows_counts_as_one_of_eight():
    from fastnn._kernels.linear import _product_parts
    before = parallel.blas_threads()
    parallel._set_blas_threads_for_tests(2)
    try:
        for m in (1, 3, 7):
            assert _product_parts(m, ROW_OUT, ROW_IN, 2) == 2        # forward
            assert _product_parts(m, ROW_IN, ROW_OUT, 2) == 2        # input gradient
            assert _product_parts(m, 128, 256, 2) == 1               # 128 kB of weights
        # one thread counts the rows there are: 1 and 3 rows whole, 7 rows (1.4M) in the
        # two halves of any product under blas_parallel_product()
        assert [_product_parts(m, ROW_OUT, ROW_IN, 1) for m in (1, 3, 7)] == [1, 1, 2]
        assert _product_parts(0, ROW_OUT, ROW_IN, 2) == 1
        assert _product_parts(8, 64, 64, 2) == 1                     # as before
        assert _product_parts(N, N_OUT, N_IN, 2) == 2
    finally:
        parallel._set_blas_threads_for_tests(before)


def test_a_one_row_product_is_its_column_halves_side_by_side(dtype, two_threads):
    x = normal((1, ROW_IN), dtype, "row-x")
    w = normal((ROW_IN, ROW_OUT), dtype, "row-w")
    b = normal(ROW_OUT, dtype, "row-b")
    dy = normal((1, ROW_OUT), dtype, "row-dy")
    y = ops.linear_forward(x, w, b)
    dx = ops.linear_backward(x, w, dy)[0]            # 1 x 784 from 256: halves of 392
    for _ in range(3):                               # on the caller or shared: same bits
        np.testing.assert_array_equal(ops.linear_forward(x, w, b), y)
        np.testing.assert_array_equal(ops.linear_backward(x, w, dy)[0], dx)
    two_threads.set_num_threads(1)
    halves = np.hstack([ops.linear_forward(x, w[:, :ROW_OUT // 2], b[:ROW_OUT // 2]),
                        ops.linear_forward(x, w[:, ROW_OUT // 2:], b[ROW_OUT // 2:])])
    np.testing.assert_array_equal(y, halves)
    dx_halves = np.hstack([ops.linear_backward(x[:, rows], w[rows], dy)[0]
                           for rows in (slice(0, ROW_IN // 2), slice(ROW_IN // 2, ROW_IN))])
    np.testing.assert_array_equal(dx, dx_halves)
    # rounding relative to the 784 terms summed, not to their sum
    assert_close(y, reference.linear_forward(x, w, b),
                 scale=np.abs(x) @ np.abs(w) + np.abs(b))


def test_a_one_row_predict_is_the_layers_one_after_another(dtype, two_threads):
    model = fastnn.Sequential(fastnn.Linear(ROW_IN, ROW_OUT), fastnn.ReLU(),
                              fastnn.Linear(ROW_OUT, 10), dtype=dtype, seed=3).eval()
    x = normal((1, ROW_IN), dtype, "row-x")
    assert model._predict_plan() is not None
    by_layer = x
    for layer in model.layers:
        by_layer = layer.infer(by_layer)
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(x), by_layer)


@pytest.fixture
def forced_way():
    """parallel._force_pool_solo, put back to the timing's choice afterwards."""
    yield parallel._force_pool_solo
    parallel._force_pool_solo(-1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_with_or_without_the_workers_gives_the_same_bits(dtype, two_threads,
                                                                   forced_way):
    # the training step times its batches with the pool's workers and without them and
    # runs the faster way (csrc/fastnn_pool.h); who runs a part never changes a result
    X, y = _data(2 * N + 17, N_IN, 10, dtype, "labels")

    def fit(way):
        forced_way(way)
        model = fastnn.Sequential(fastnn.Linear(N_IN, N_OUT), fastnn.ReLU(),
                                  fastnn.Linear(N_OUT, 10), dtype=dtype, seed=5)
        model.fit(X, y, epochs=3, batch_size=N, l2=1e-4)
        return model._flat_params.copy()

    tuned = fit(-1)
    np.testing.assert_array_equal(fit(0), tuned)
    np.testing.assert_array_equal(fit(1), tuned)
    per_layer = fastnn.Sequential(fastnn.Linear(N_IN, N_OUT), fastnn.ReLU(),
                                  fastnn.Linear(N_OUT, 10), dtype=dtype, seed=5)
    forced_way(1)
    per_layer.fit(X, y, epochs=3, batch_size=N, l2=1e-4, compiled=False)
    np.testing.assert_array_equal(per_layer._flat_params, tuned)


def _tuning_after_epochs(epochs, way, forced_way):
    """The training step's timing of its batches after `epochs` epochs of 3 batches."""
    from fastnn.nn import _compiled
    X, y = _data(2 * N + 17, N_IN, 10, np.float32, "labels")
    seen = []
    real_run = _compiled.EpochRunner.run_epoch

    def keep(self, *args, **kwargs):
        seen.append(self.pool_tuning)
        return real_run(self, *args, **kwargs)

    forced_way(way)
    _compiled.EpochRunner.run_epoch = keep
    try:
        fastnn.Sequential(fastnn.Linear(N_IN, N_OUT), fastnn.ReLU(),
                          fastnn.Linear(N_OUT, 10), seed=5).fit(X, y, epochs=epochs,
                                                                batch_size=N)
    finally:
        _compiled.EpochRunner.run_epoch = real_run
    assert all(t is seen[0] for t in seen), "the timing is kept across the fit's epochs"
    return seen[0]


def test_the_training_step_times_both_ways_and_keeps_its_timing(two_threads, forced_way):
    helped, alone, steps, _ = _tuning_after_epochs(4, -1, forced_way)
    assert steps == 12                      # 4 epochs of 3 batches, each timed
    assert helped > 0 and alone > 0         # the first two batches try both ways
    helped, alone, steps, _ = _tuning_after_epochs(2, 1, forced_way)
    assert (steps, helped) == (6, 0) and alone > 0
    helped, alone, steps, _ = _tuning_after_epochs(2, 0, forced_way)
    assert (steps, alone) == (6, 0) and helped > 0


def test_one_thread_does_not_time_the_ways(restore_threads, forced_way):
    restore_threads.set_num_threads(1)
    assert tuple(_tuning_after_epochs(2, -1, forced_way)) == (0, 0, 0, 0)


@pytest.mark.skipif(not POOL_BUILT or CPUS < 2, reason="needs the pool and 2 CPUs")
def test_after_training_alone_the_workers_take_part_again(two_threads, forced_way):
    _tuning_after_epochs(1, 1, forced_way)
    forced_way(-1)
    # each chunk pauses 2 ms: the caller cannot run all four before a worker joins
    _, threads = parallel._pool_for_log(4, 2, 2000, linger=True)
    assert threads == 2


def test_the_way_and_the_timing_are_checked(forced_way):
    with pytest.raises(ValueError, match="way must be"):
        forced_way(2)
    assert forced_way(-1) == -1
    from fastnn._kernels import training_module
    kernel = training_module()
    assert kernel.POOL_TUNING_SIZE == 4


def test_on_one_thread_a_mid_size_product_is_its_halves_one_after_the_other(dtype,
                                                                           restore_threads):
    # under the size from which BLAS may use threads, one thread multiplies the two parts
    # in turn: OpenBLAS's small-matrix kernels are faster on them than on the whole
    assert N * N_IN * N_OUT < parallel.blas_parallel_product()
    restore_threads.set_num_threads(1)
    x, w, b, dy = _operands(dtype)
    y = ops.linear_forward(x, w, b)
    halves = np.vstack([ops.linear_forward(x[:N // 2], w, b),
                        ops.linear_forward(x[N // 2:], w, b)])
    np.testing.assert_array_equal(y, halves)
    dw = ops.linear_backward(x, w, dy)[1]
    left, right = (ops.linear_backward(x, w[:, cols], dy[:, cols])[1]
                   for cols in (slice(0, N_OUT // 2), slice(N_OUT // 2, N_OUT)))
    np.testing.assert_array_equal(dw, np.hstack([left, right]))
