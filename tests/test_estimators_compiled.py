"""The MLP estimators on fastnn's compiled epoch (fastnn.nn._compiled.EpochRunner) against
their per-layer path (Sequential.fit with the objective as a loss object): every objective
the runner states must give the same weights, loss curve and estimator state.

These are also the first tests of the runner's loss_scale, grad_scale, l2_per_weight and
sample_weight features, which only the estimators use.
"""
import pickle
import warnings

import numpy as np
import pytest

from fastnn import MLPClassifier, MLPRegressor
from fastnn.estimators import _mlp
from fastnn.nn import Sequential, TrainingDivergedError, _compiled

N, D = 157, 6          # 157 rows in batches of 32: four full batches and one of 29

TOL = {"float64": dict(rtol=1e-10, atol=1e-13), "float32": dict(rtol=1e-5, atol=1e-6)}


class _Calls:
    """Counts the compiled epochs and the Sequential.fit calls made while fitting."""

    def __init__(self, monkeypatch):
        self.epochs = self.seq_fits = 0
        run_epoch, seq_fit = _compiled.EpochRunner.run_epoch, Sequential.fit

        def counting_run_epoch(runner, *args, **kwargs):
            self.epochs += 1
            return run_epoch(runner, *args, **kwargs)

        def counting_fit(model, *args, **kwargs):
            self.seq_fits += 1
            return seq_fit(model, *args, **kwargs)

        monkeypatch.setattr(_compiled.EpochRunner, "run_epoch", counting_run_epoch)
        monkeypatch.setattr(Sequential, "fit", counting_fit)

    def reset(self):
        self.epochs = self.seq_fits = 0


@pytest.fixture
def calls(monkeypatch):
    return _Calls(monkeypatch)


def _data(kind, seed=0, n=N):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    if kind == "multiclass":
        y = rng.integers(0, 4, n)
    elif kind == "binary":
        y = np.where(rng.random(n) < 0.4, "no", "yes")
    elif kind == "multilabel":
        y = (rng.random((n, 3)) < 0.5).astype(np.int64)
    elif kind == "reg1":
        y = X[:, 0] - 2 * X[:, 1] ** 2 + 0.1 * rng.standard_normal(n)
    elif kind == "reg3":
        y = np.stack([X[:, 0], X[:, 1] * X[:, 2], -X[:, 3]], axis=1) + 0.1 * rng.standard_normal((n, 3))
    else:                                  # poisson counts
        y = rng.poisson(np.exp(0.3 * X[:, 0])).astype(float)
    return X, y


def _weights(seed=1, n=N):
    rng = np.random.default_rng(seed)
    w = rng.random(n) * 3
    w[rng.random(n) < 0.2] = 0.0           # zero weights among the others
    return w


def _estimator(kind, **params):
    cls = MLPClassifier if kind in ("multiclass", "binary", "multilabel") else MLPRegressor
    base = dict(hidden_layer_sizes=(7, 5), max_iter=6, batch_size=32, random_state=3,
                alpha=0.3, l1=0.01, learning_rate_init=0.01, dtype="float64", tol=0.0)
    if kind == "poisson":
        base["loss"] = "poisson"
    base.update(params)
    return cls(**base)


def _fit(est, compiled, calls, monkeypatch, method="fit", *args, **kwargs):
    """Fit (or partial_fit) est on the compiled or the per-layer path; check which ran."""
    monkeypatch.setattr(_mlp, "_USE_COMPILED", compiled)
    calls.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # ConvergenceWarning
        getattr(est, method)(*args, **kwargs)
    if compiled:
        assert calls.epochs == est.n_iter_ and calls.seq_fits == 0, "compiled path not taken"
    else:
        assert calls.epochs == 0 and calls.seq_fits == est.n_iter_
    return est


def _assert_same(fast, slow, dtype="float64"):
    tol = TOL[dtype]
    assert fast.n_iter_ == slow.n_iter_ and fast.t_ == slow.t_
    for a, b in zip(fast.coefs_ + fast.intercepts_, slow.coefs_ + slow.intercepts_):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, **tol)
    np.testing.assert_allclose(fast.loss_curve_, slow.loss_curve_, **tol)
    np.testing.assert_allclose(fast.loss_, slow.loss_, **tol)
    assert fast._optimizer.step_count == slow._optimizer.step_count
    assert fast._optimizer.lr == slow._optimizer.lr
    # the model's generator advanced the same way (shuffling, dropout)
    assert fast._model._rng.bit_generator.state == slow._model._rng.bit_generator.state


def _pair(kind, calls, monkeypatch, X, y, sample_weight=None, **params):
    fast = _fit(_estimator(kind, **params), True, calls, monkeypatch, "fit", X, y,
                sample_weight=sample_weight)
    slow = _fit(_estimator(kind, **params), False, calls, monkeypatch, "fit", X, y,
                sample_weight=sample_weight)
    return fast, slow


KINDS = ["multiclass", "binary", "multilabel", "reg1", "reg3"]
SOLVERS = {
    "adam": dict(solver="adam"),
    "sgd": dict(solver="sgd", momentum=0.0),
    "momentum": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    "nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_matches_per_layer_float64(kind, solver, weighted, calls, monkeypatch):
    X, y = _data(kind)
    sw = _weights() if weighted else None
    fast, slow = _pair(kind, calls, monkeypatch, X, y, sw, **SOLVERS[solver])
    _assert_same(fast, slow)
    # the fit did learn something: the loss went down
    assert fast.loss_curve_[-1] < fast.loss_curve_[0]


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_matches_per_layer_float32(kind, calls, monkeypatch):
    X, y = _data(kind)
    for sw in (None, _weights()):
        fast, slow = _pair(kind, calls, monkeypatch, X, y, sw, dtype="float32",
                           solver="sgd", momentum=0.9)
        _assert_same(fast, slow, "float32")
        fast, slow = _pair(kind, calls, monkeypatch, X, y, sw, dtype="float32")
        _assert_same(fast, slow, "float32")


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_saturated_losses_clip_alike(kind, dtype, calls, monkeypatch):
    # inputs x 1e3: many rows beyond scikit-learn's clip of probabilities to [eps, 1 - eps]
    # (eps of the dtype), which both paths apply to the loss values they report
    X, y = _data(kind)
    X = X * 1e3
    for sw in (None, _weights()):
        fast, slow = _pair(kind, calls, monkeypatch, X, y, sw, dtype=dtype)
        _assert_same(fast, slow, dtype)
        eps = np.finfo(dtype).eps
        assert max(fast.loss_curve_) <= -np.log(eps) * fast.n_outputs_ * (1 + 1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha, l1", [(0.0, 0.0), (2.0, 0.0), (0.0, 0.05)])
def test_penalties_alone(kind, alpha, l1, calls, monkeypatch):
    # each penalty separately (the others above combine alpha and l1)
    X, y = _data(kind)
    fast, slow = _pair(kind, calls, monkeypatch, X, y, _weights(), alpha=alpha, l1=l1)
    _assert_same(fast, slow)


@pytest.mark.parametrize("kind", KINDS)
def test_uniform_weights_not_one(kind, calls, monkeypatch):
    # all weights 2.5: the data term is the plain mean, but alpha's L2 term is divided
    # by the batch's weight sum (2.5 x the batch size), as the per-layer objective does
    X, y = _data(kind)
    fast, slow = _pair(kind, calls, monkeypatch, X, y, np.full(N, 2.5), alpha=1.0)
    _assert_same(fast, slow)
    plain, _ = _pair(kind, calls, monkeypatch, X, y, None, alpha=1.0)
    assert not np.allclose(plain.coefs_[0], fast.coefs_[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_weight_batch(kind, calls, monkeypatch):
    # without shuffling, the first batch (rows 0-31) has weight 0: no data gradient and
    # no alpha term for that batch, but the l1 term and the optimizer step still happen
    X, y = _data(kind)
    sw = _weights()
    sw[:32] = 0.0
    fast, slow = _pair(kind, calls, monkeypatch, X, y, sw, shuffle=False, alpha=0.5, l1=0.02)
    _assert_same(fast, slow)
    assert fast._optimizer.step_count == 5 * fast.n_iter_


def test_integer_and_equal_weights_agree(calls, monkeypatch):
    # weight 2 on a row is two copies of it in the weighted mean: with the batch size 1
    # shuffling and batching play no role, so the fits agree (alpha off: its divisor
    # is the weight sum)
    X, y = _data("multiclass")
    sw = np.where(np.arange(N) % 3 == 0, 2.0, 1.0)
    fast, slow = _pair("multiclass", calls, monkeypatch, X, y, sw, alpha=0.0, batch_size=N,
                       shuffle=False)
    _assert_same(fast, slow)
    rows = np.repeat(np.arange(N), sw.astype(int))
    dup = _fit(_estimator("multiclass", alpha=0.0, batch_size=len(rows), shuffle=False),
               True, calls, monkeypatch, "fit", X[rows], y[rows])
    for a, b in zip(fast.coefs_, dup.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_class_weight(calls, monkeypatch):
    X, y = _data("multiclass")
    for cw in ("balanced", {0: 3.0, 1: 0.5, 2: 1.0, 3: 1.0}):
        fast, slow = _pair("multiclass", calls, monkeypatch, X, y, class_weight=cw)
        _assert_same(fast, slow)


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_learning_rate_schedules(schedule, calls, monkeypatch):
    # adaptive with tol huge and n_iter_no_change=1 divides the rate by 5 every other epoch
    X, y = _data("multiclass")
    params = dict(solver="sgd", momentum=0.9, learning_rate=schedule, power_t=0.25,
                  learning_rate_init=0.05, max_iter=8)
    if schedule == "adaptive":
        params.update(tol=1e3, n_iter_no_change=1)
    fast, slow = _pair("multiclass", calls, monkeypatch, X, y, **params)
    _assert_same(fast, slow)
    assert fast.n_iter_ == 8
    if schedule == "constant":
        assert fast._optimizer.lr == 0.05
    else:
        assert fast._optimizer.lr < 0.05 / 2


@pytest.mark.parametrize("solver", ["nesterov", "adam"])
def test_extras_batch_norm_and_dropout(solver, calls, monkeypatch):
    # the extras also run compiled: batch-norm statistics and dropout masks (drawn from
    # the model's generator) as on the per-layer path
    for kind in ("multiclass", "reg3"):
        X, y = _data(kind, n=129)          # the last batch of 1 row joins the one before
        fast, slow = _pair(kind, calls, monkeypatch, X, y, _weights(n=129), batch_norm=True,
                           dropout=0.3, **SOLVERS[solver])
        if solver == "adam":
            # The bias of a Linear layer followed by batch norm has a zero gradient up to
            # rounding (~1e-17), and Adam divides that noise by its own root mean square:
            # the two paths' different rounding moves those biases apart by ~lr * 1e-9.
            # Everything else stays at rounding level.
            for est in (fast, slow):
                for layer in est._linears[:-1]:
                    layer.bias.data[...] = 0.0
            tol = dict(rtol=1e-8, atol=1e-11)
        else:
            _assert_same(fast, slow)
            tol = TOL["float64"]
        for a, b in zip(fast.coefs_ + fast.intercepts_, slow.coefs_ + slow.intercepts_):
            np.testing.assert_allclose(a, b, **tol)
        np.testing.assert_allclose(fast.loss_curve_, slow.loss_curve_, **tol)
        np.testing.assert_allclose(fast._model._flat_params, slow._model._flat_params, **tol)
        if solver != "adam":
            np.testing.assert_allclose(fast._model._flat_buffers, slow._model._flat_buffers,
                                       **tol)
            np.testing.assert_allclose(fast.predict(X), slow.predict(X), **tol)
        assert fast._model._rng.bit_generator.state == slow._model._rng.bit_generator.state


def test_stopping_on_training_loss(calls, monkeypatch):
    # tol large: every epoch after the first counts as no improvement, so the fit stops
    # after n_iter_no_change + 2 epochs, on both paths
    X, y = _data("reg1")
    fast, slow = _pair("reg1", calls, monkeypatch, X, y, tol=10.0, n_iter_no_change=2,
                       max_iter=50)
    _assert_same(fast, slow)
    assert fast.n_iter_ == 4
    np.testing.assert_allclose(fast.best_loss_, slow.best_loss_, **TOL["float64"])


@pytest.mark.parametrize("kind", ["multiclass", "binary", "reg3"])
def test_early_stopping(kind, calls, monkeypatch):
    X, y = _data(kind)
    fast, slow = _pair(kind, calls, monkeypatch, X, y, _weights(), early_stopping=True,
                       validation_fraction=0.2, n_iter_no_change=3, tol=1e-3, max_iter=30,
                       learning_rate_init=0.05)
    _assert_same(fast, slow)
    np.testing.assert_allclose(fast.validation_scores_, slow.validation_scores_,
                               **TOL["float64"])
    np.testing.assert_allclose(fast.best_validation_score_, slow.best_validation_score_,
                               **TOL["float64"])
    assert fast.best_loss_ is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", ["adam", "nesterov"])
def test_partial_fit_continues_optimizer_state(kind, solver, calls, monkeypatch):
    # three partial_fit calls: all compiled, all per-layer, and alternating paths give the
    # same weights, so the optimizer state carries over between calls (and between paths)
    X, y = _data(kind)
    sw = _weights()
    extra = {"classes": np.unique(y)} if kind in ("multiclass", "binary") else {}
    if kind == "multilabel":
        extra = {"classes": np.arange(y.shape[1])}      # a label matrix's classes: columns
    runs = {}
    for pattern in ((True, True, True), (False, False, False), (True, False, True)):
        est = _estimator(kind, **SOLVERS[solver])
        for i, compiled in enumerate(pattern):
            part = slice(0, None) if i != 1 else slice(0, 100)    # the 2nd call on fewer rows
            _fit(est, compiled, calls, monkeypatch, "partial_fit", X[part], y[part],
                 sample_weight=sw[part], **extra)
        runs[pattern] = est
    ref = runs[(False, False, False)]
    assert ref.n_iter_ == 1 and ref.t_ == 2 * N + 100 and len(ref.loss_curve_) == 3
    assert ref._optimizer.step_count == 5 + 4 + 5
    for pattern, est in runs.items():
        _assert_same(est, ref)
    # a partial_fit that started from a fresh optimizer would not match
    fresh = _estimator(kind, **SOLVERS[solver])
    _fit(fresh, True, calls, monkeypatch, "partial_fit", X, y, sample_weight=sw, **extra)
    _fit(fresh, True, calls, monkeypatch, "partial_fit", X[:100], y[:100],
         sample_weight=sw[:100], **extra)
    del fresh._optimizer
    _fit(fresh, True, calls, monkeypatch, "partial_fit", X, y, sample_weight=sw, **extra)
    assert not np.allclose(fresh.coefs_[0], ref.coefs_[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "reg1"])
def test_warm_start_continues(kind, calls, monkeypatch):
    X, y = _data(kind)
    ests = {}
    for pattern in ((True, True), (False, False), (False, True)):
        est = _estimator(kind, warm_start=True, max_iter=3)
        for compiled in pattern:
            _fit(est, compiled, calls, monkeypatch, "fit", X, y)
        ests[pattern] = est
    ref = ests[(False, False)]
    assert len(ref.loss_curve_) == 6 and ref.n_iter_ == 3 and ref.t_ == 6 * N
    for est in ests.values():
        _assert_same(est, ref)


def test_pickled_estimator_keeps_training(calls, monkeypatch):
    # the runner reads the optimizer state of an unpickled estimator
    X, y = _data("multiclass")
    est = _fit(_estimator("multiclass", warm_start=True, max_iter=2), True, calls,
               monkeypatch, "fit", X, y)
    copy = pickle.loads(pickle.dumps(est))
    _fit(est, True, calls, monkeypatch, "fit", X, y)
    _fit(copy, False, calls, monkeypatch, "fit", X, y)
    _assert_same(copy, est)


@pytest.mark.parametrize("kind", ["multiclass", "reg1"])
def test_diverging_fit_raises_and_rolls_back(kind, calls, monkeypatch):
    X, y = _data(kind)
    if kind == "reg1":
        y = y * 1e30
    est = _fit(_estimator(kind, solver="sgd", warm_start=True, max_iter=2,
                          learning_rate_init=1e-30), True, calls, monkeypatch, "fit", X, y)
    state = pickle.dumps(est)
    X_big = X * 1e30 if kind == "multiclass" else X
    est.set_params(learning_rate_init=1e10)
    for compiled in (True, False):
        monkeypatch.setattr(_mlp, "_USE_COMPILED", compiled)
        calls.reset()
        with pytest.raises(TrainingDivergedError, match="training diverged"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X_big, y)
        assert (calls.epochs > 0) == compiled
        est.set_params(learning_rate_init=1e-30)
        assert pickle.dumps(est) == state
        est.set_params(learning_rate_init=1e10)


def test_poisson_keeps_the_per_layer_path(calls, monkeypatch):
    X, y = _data("poisson")
    est = _fit(_estimator("poisson"), False, calls, monkeypatch, "fit", X, y)
    monkeypatch.setattr(_mlp, "_USE_COMPILED", True)
    calls.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = _estimator("poisson").fit(X, y)
    assert calls.epochs == 0 and calls.seq_fits == again.n_iter_
    _assert_same(again, est)


def test_compiled_fit_is_deterministic(calls, monkeypatch):
    X, y = _data("multiclass")
    a = _fit(_estimator("multiclass", dtype="float32"), True, calls, monkeypatch, "fit", X, y)
    b = _fit(_estimator("multiclass", dtype="float32"), True, calls, monkeypatch, "fit", X, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    assert a.loss_curve_ == b.loss_curve_
