"""The kernels bound the thread count of scipy's BLAS while they run, and put it back."""
import threading

import numpy as np
import pytest

import fastnn
from fastnn._kernels import parallel

pytestmark = pytest.mark.skipif(not parallel.blas_thread_control(),
                                reason="no thread setter found for scipy's BLAS")


@pytest.fixture
def blas_two_threads():
    """scipy's BLAS at 2 threads for the test (as on a 2-core machine), then as before."""
    before = parallel.blas_threads()
    parallel._set_blas_threads_for_tests(2)
    yield
    parallel._set_blas_threads_for_tests(before)


def test_small_products_run_on_one_blas_thread(blas_two_threads):
    seen, _ = parallel.run_with_blas_threads(2, parallel.blas_parallel_product() / 2,
                                             parallel.blas_threads)
    assert seen == 1
    assert parallel.blas_threads() == 2


def test_large_products_keep_the_given_count(blas_two_threads):
    big = parallel.blas_parallel_product() * 10
    assert parallel.run_with_blas_threads(2, big, parallel.blas_threads)[0] == 2
    assert parallel.run_with_blas_threads(1, big, parallel.blas_threads)[0] == 1
    # never more threads than BLAS already has
    assert parallel.run_with_blas_threads(8, big, parallel.blas_threads)[0] == 2
    assert parallel.blas_threads() == 2


def test_nested_and_failing_calls_restore_the_count(blas_two_threads):
    def inner():
        return parallel.run_with_blas_threads(2, 1e12, parallel.blas_threads)[0]

    assert parallel.run_with_blas_threads(1, 1e12, inner)[1] == 1   # the outer call rules

    def fail():
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        parallel.run_with_blas_threads(1, 1e12, fail)
    assert parallel.blas_threads() == 2


def test_fit_and_predict_leave_blas_as_they_found_it(blas_two_threads):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 64)).astype(np.float32)
    y = rng.integers(0, 3, 256)
    old = fastnn.get_num_threads()
    try:
        for n in (1, 2):
            fastnn.set_num_threads(n)
            model = fastnn.Sequential(fastnn.Linear(64, 32), fastnn.ReLU(), fastnn.Linear(32, 3),
                                      seed=0)
            model.fit(X, y, epochs=2, batch_size=32)
            model.predict(X)
            assert parallel.blas_threads() == 2
    finally:
        fastnn.set_num_threads(old)


def test_threads_predicting_at_once_leave_blas_unchanged(blas_two_threads):
    rng = np.random.default_rng(1)
    model = fastnn.Sequential(fastnn.Linear(300, 200), fastnn.ReLU(), fastnn.Linear(200, 5),
                              seed=0)
    X = rng.standard_normal((1000, 300)).astype(np.float32)
    expected = model.predict(X)
    results, errors = [None] * 4, []

    def work(i):
        try:
            for _ in range(20):
                results[i] = model.predict(X)
        except Exception as exc:      # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert parallel.blas_threads() == 2
