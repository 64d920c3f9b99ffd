"""The worker pool that shares the optimizer step's chunks with the caller
(csrc/fastnn_pool.h): every chunk runs exactly once, a worker does take chunks, the
result does not depend on the thread count, and several callers at once and a forked
child all work."""
import os
import sys
import threading
import time

import numpy as np
import pytest

from fastnn._kernels import optimizers, parallel

from conftest import normal
from test_optim import numpy_adam, numpy_sgd

POOL_BUILT = sys.platform.startswith("linux")     # elsewhere the pool runs serially
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
# above the size from which the optimizer step uses the pool, and not a multiple of its
# chunk, so the last chunk is short
N_POOLED = 300_001


@pytest.mark.parametrize("n_threads", [1, 2, 4])
@pytest.mark.parametrize("n_chunks", [0, 1, 2, 37])
def test_every_chunk_runs_once(n_chunks, n_threads):
    runs, threads = parallel._pool_for_log(n_chunks, n_threads, 200)
    assert runs.shape == (n_chunks,) and (runs == 1).all()
    assert threads <= max(1, min(n_threads, n_chunks))


@pytest.mark.skipif(not POOL_BUILT or CPUS < 2, reason="needs the pool and 2 CPUs")
def test_a_worker_takes_chunks():
    # 40 chunks of 2 ms: a worker woken even 10 ms late still finds chunks left
    runs, threads = parallel._pool_for_log(40, 2, 2000)
    assert (runs == 1).all()
    assert threads == 2


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity")
def test_a_caller_allowed_one_cpu_runs_every_chunk_itself():
    seen = {}

    def on_one_cpu():
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})    # this thread only
        seen["result"] = parallel._pool_for_log(40, 2, 500)

    t = threading.Thread(target=on_one_cpu)
    t.start()
    t.join()
    runs, threads = seen["result"]
    assert (runs == 1).all()
    assert threads == 1


@pytest.mark.skipif(not POOL_BUILT or CPUS < 2, reason="needs the pool and 2 CPUs")
def test_a_caller_that_narrows_its_affinity_is_obeyed_at_once():
    seen = []

    def narrowing():
        seen.append(parallel._pool_for_log(40, 2, 2000)[1])
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})    # this thread only
        seen.append(parallel._pool_for_log(40, 2, 500)[1])

    t = threading.Thread(target=narrowing)
    t.start()
    t.join()
    assert seen == [2, 1]


def adam_steps(dtype, n_threads, decoupled, n_steps=3, n=N_POOLED):
    p = normal(n, dtype, "pool-param")
    m, v = np.zeros_like(p), np.zeros_like(p)
    grads = [normal(n, dtype, "pool-grad", step) for step in range(n_steps)]
    for step, g in enumerate(grads, start=1):
        optimizers.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.05, decoupled, step,
                             n_threads)
    return p, grads


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_adam_step_is_the_same_on_any_thread_count(dtype, decoupled):
    one, grads = adam_steps(dtype, 1, decoupled)
    for n_threads in (2, 3):
        np.testing.assert_array_equal(adam_steps(dtype, n_threads, decoupled)[0], one)
    start = normal(N_POOLED, np.float64, "pool-param") if dtype == np.float64 else \
        normal(N_POOLED, dtype, "pool-param").astype(np.float64)
    expected = numpy_adam(start, [g.astype(np.float64) for g in grads], 1e-3,
                          weight_decay=0.05, decoupled=decoupled)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert np.abs(one - expected).max() <= rtol * np.abs(expected).max()


SGD_CASES = {"plain": (0.0, False, 0.0), "weight-decay": (0.0, False, 0.05),
             "momentum": (0.9, False, 0.0), "nesterov-decay": (0.7, True, 0.05)}


@pytest.mark.parametrize("case", sorted(SGD_CASES))
def test_sgd_step_is_the_same_on_any_thread_count(dtype, case):
    momentum, nesterov, weight_decay = SGD_CASES[case]
    grads = [normal(N_POOLED, dtype, "pool-sgd-grad", step) for step in range(3)]
    results = []
    for n_threads in (1, 2, 3):
        p = normal(N_POOLED, dtype, "pool-param")
        buf = np.zeros_like(p)
        for step, g in enumerate(grads):
            optimizers.sgd_step(p, g, buf, 0.01, momentum, 0.0, nesterov, weight_decay,
                                step == 0, n_threads)
        results.append(p)
    for p in results[1:]:
        np.testing.assert_array_equal(p, results[0])
    expected = numpy_sgd(normal(N_POOLED, dtype, "pool-param").astype(np.float64),
                         [g.astype(np.float64) for g in grads], 0.01, momentum, nesterov,
                         weight_decay)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert np.abs(results[0] - expected).max() <= rtol * np.abs(expected).max()


def test_threads_stepping_at_once_each_get_their_own_result():
    n_callers, n_steps = 4, 8
    start = threading.Barrier(n_callers)
    results = [None] * n_callers

    def caller(i):
        p = normal(N_POOLED, np.float32, "pool-caller", i)
        m, v = np.zeros_like(p), np.zeros_like(p)
        start.wait()
        for step in range(1, n_steps + 1):
            g = normal(N_POOLED, np.float32, "pool-caller-grad", i, step)
            optimizers.adam_step(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.0, False, step, 2)
        results[i] = p

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n_callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(n_callers):
        p = normal(N_POOLED, np.float32, "pool-caller", i)
        m, v = np.zeros_like(p), np.zeros_like(p)
        for step in range(1, n_steps + 1):
            g = normal(N_POOLED, np.float32, "pool-caller-grad", i, step)
            optimizers.adam_step(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.0, False, step, 1)
        np.testing.assert_array_equal(results[i], p)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_starts_its_own_workers():
    parallel._pool_for_log(8, 2, 100)          # the parent's workers exist
    pid = os.fork()
    if pid == 0:                                # the child: no pytest from here on
        code = 3
        try:
            runs, threads = parallel._pool_for_log(40, 2, 2000)
            code = 0 if (runs == 1).all() and (threads == 2 or CPUS < 2 or
                                               not POOL_BUILT) else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in the pool")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("l1, l2", [(0.0, 1e-3), (1e-3, 0.0), (2e-3, 5e-4)])
def test_penalty_step_is_the_same_on_any_thread_count(dtype, l1, l2):
    w = normal(N_POOLED, dtype, "pool-w")
    w[::1000] = 0                                   # sign(0) is 0
    grad0 = normal(N_POOLED, dtype, "pool-g")
    results = []
    for n_threads in (1, 2, 3):
        grad = grad0.copy()
        value = optimizers.penalty_step(w, grad, l1, l2, n_threads)
        results.append((value, grad))
    for value, grad in results[1:]:
        assert value == results[0][0]
        np.testing.assert_array_equal(grad, results[0][1])
    w64 = w.astype(np.float64)
    expected = l1 * np.abs(w64).sum() + l2 * np.dot(w64, w64)
    assert results[0][0] == pytest.approx(expected, rel=1e-12)
    expected_grad = grad0.astype(np.float64) + l1 * np.sign(w64) + 2 * l2 * w64
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(results[0][1], expected_grad, rtol=rtol,
                               atol=rtol * np.abs(expected_grad).max())


def test_penalty_step_rejects_unequal_lengths():
    w = np.ones(10, dtype=np.float32)
    grad = np.zeros(9, dtype=np.float32)
    with pytest.raises(ValueError, match="10 elements but grad has 9"):
        optimizers.penalty_step(w, grad, 0.0, 1e-3, 1)
    assert (grad == 0).all()
