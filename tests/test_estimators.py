"""fastnn's scikit-learn-style estimators on their own (scikit-learn not needed).

Labels, probabilities, partial_fit, pickling, sample and class weights, the extras
(dropout, batch_norm, l1, dtype), input validation and the rollback of failed fits.
"""
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import MLPClassifier, MLPRegressor, Perceptron
from fastnn.estimators._base import ConvergenceWarning, NotFittedError


def blobs(n=240, d=5, k=3, seed=0, spread=1.0):
    """k well-separated Gaussian blobs (labels 0..k-1, balanced)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    y = np.arange(n) % k
    X = centers[y] + rng.normal(scale=spread, size=(n, d))
    assert len(np.unique(y)) == k
    return X, y


def small_mlp(**params):
    return MLPClassifier(**{"hidden_layer_sizes": (16,), "max_iter": 60, "random_state": 0,
                            "learning_rate_init": 0.01, **params})


def fit_quietly(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


ESTIMATORS = [small_mlp, lambda **p: Perceptron(**p)]


def digits_split():
    """Standardised digits (shipped with fastnn), 1347 train / 450 test rows."""
    X, y = fastnn.datasets.load_digits()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, te = order[:1347], order[1347:]
    mean, std = X[tr].mean(0), X[tr].std(0)
    std[std == 0] = 1.0
    return (X[tr] - mean) / std, (X[te] - mean) / std, y[tr], y[te]


# ------------------------------------------------------------------------- labels
@pytest.mark.parametrize("make", ESTIMATORS, ids=["MLPClassifier", "Perceptron"])
@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog", "emu"]), np.array(["cat", "dog", "emu"], dtype=object),
    np.array([-7, 3, 11]), np.array([1.0, 2.0, 5.0]), np.array([False, True]),
    np.array(["no", "yes"]),
], ids=["str", "object-str", "neg-int", "float-int", "bool", "binary-str"])
def test_labels_round_trip(make, labels):
    X, y = blobs(k=len(labels))
    est = fit_quietly(make(), X, labels[y])
    assert est.classes_.tolist() == sorted(labels.tolist())
    pred = est.predict(X)
    assert pred.dtype == est.classes_.dtype
    assert set(pred.tolist()) <= set(labels.tolist())
    assert np.mean(pred == labels[y]) > 0.9
    assert est.score(X, labels[y]) > 0.9


def test_continuous_labels_are_rejected():
    X, _ = blobs()
    with pytest.raises(ValueError, match="Unknown label type"):
        small_mlp().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        Perceptron().fit(X, np.linspace(0, 1, len(X)))


# -------------------------------------------------------------------- probabilities
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_proba(k, dtype):
    X, y = blobs(k=k)
    est = fit_quietly(small_mlp(dtype=dtype), X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), k)
    assert proba.dtype == np.dtype(dtype)
    tol = 10 * k * np.finfo(dtype).eps      # k rounded terms of a sum near 1
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=tol)
    assert np.all(proba >= 0)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], est.predict(X))
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(est.predict_log_proba(X), np.log(proba))
    assert est.coefs_[0].dtype == np.dtype(dtype)
    assert est.out_activation_ == ("logistic" if k == 2 else "softmax")
    assert est.n_outputs_ == (1 if k == 2 else k)
    assert [c.shape for c in est.coefs_] == [(5, 16), (16, est.n_outputs_)]
    assert [b.shape for b in est.intercepts_] == [(16,), (est.n_outputs_,)]
    assert est.n_layers_ == 3


def test_multilabel():
    X, y = blobs(k=3)
    Y = np.stack([y == 0, y != 1, y == 2], axis=1).astype(int)
    est = fit_quietly(small_mlp(), X, Y)
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 3
    assert est.predict(X).shape == (len(X), 3)
    assert set(np.unique(est.predict(X))) <= {0, 1}
    assert est.predict_proba(X).shape == (len(X), 3)
    assert est.score(X, Y) > 0.9
    # partial_fit wants classes on its first call for label matrices too (scikit-learn)
    fresh = small_mlp()
    with pytest.raises(ValueError, match="classes must be passed"):
        fresh.partial_fit(X, Y)
    assert not hasattr(fresh, "coefs_")
    # its classes are the column indices: classes= must hold them all
    with pytest.raises(ValueError, match="classes not in"):
        fresh.partial_fit(X, Y, classes=[0, 1])
    fresh.partial_fit(X, Y, classes=[0, 1, 2, 3])
    assert fresh.n_outputs_ == 3 and fresh.classes_.tolist() == [0, 1, 2, 3]
    assert fresh.partial_fit(X, Y).classes_.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not the same as on last call"):
        fresh.partial_fit(X, Y, classes=[0, 1, 2])


# ---------------------------------------------------------------------- partial_fit
def test_partial_fit_keeps_optimizer_state_and_rejects_unseen_labels():
    X, y = blobs()
    labels = np.array(["a", "b", "c"])
    est = small_mlp()
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, labels[y])
    est.partial_fit(X[:120], labels[y[:120]], classes=labels)
    first_steps = est._optimizer.step_count        # one Adam step per mini-batch
    assert first_steps == 1 and est.n_iter_ == 1 and est.t_ == 120
    optimizer = est._optimizer
    est.partial_fit(X[120:], labels[y[120:]])
    assert est._optimizer is optimizer and optimizer.step_count == 2
    assert est.t_ == 240 and len(est.loss_curve_) == 2
    # a fresh optimizer would take Adam's first (bias-corrected, +-lr sized) step; the
    # continued one does not: the two runs must differ
    restarted = small_mlp().partial_fit(X[:120], labels[y[:120]], classes=labels)
    restarted._optimizer = restarted._make_optimizer(restarted._model)
    restarted.partial_fit(X[120:], labels[y[120:]])
    assert not np.array_equal(restarted.coefs_[0], est.coefs_[0])
    before = [c.copy() for c in est.coefs_]
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X[:10], np.array(["a"] * 9 + ["zebra"]))
    with pytest.raises(ValueError, match="not the same as on last call"):
        est.partial_fit(X[:10], labels[y[:10]], classes=["a", "b"])
    for b, c in zip(before, est.coefs_):
        np.testing.assert_array_equal(b, c)
    assert optimizer.step_count == 2


def test_perceptron_partial_fit():
    X, y = blobs()
    est = Perceptron(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    for _ in range(5):
        est.partial_fit(X, y, classes=[0, 1, 2])
    assert est.n_iter_ == 1 and est.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not seen"):
        est.partial_fit(X[:5], [0, 1, 2, 3, 0])


def test_partial_fit_survives_pickling():
    X, y = blobs()
    a = small_mlp().partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    b = pickle.loads(pickle.dumps(a))
    for est in (a, b):
        est.partial_fit(X[100:], y[100:])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


# ------------------------------------------------------------------------ pickling
@pytest.mark.parametrize("est", [small_mlp(), small_mlp(batch_norm=True, dropout=0.2),
                                 MLPRegressor(hidden_layer_sizes=(8,), max_iter=30),
                                 Perceptron()], ids=["mlp", "mlp-bn-dropout", "regressor",
                                                     "perceptron"])
def test_pickle_round_trip(est):
    X, y = blobs()
    fit_quietly(est, X, y)
    twin = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(twin.predict(X), est.predict(X))
    for method in ("predict_proba", "decision_function"):
        if hasattr(est, method):
            np.testing.assert_array_equal(getattr(twin, method)(X), getattr(est, method)(X))
    assert twin.get_params() == est.get_params()


# ------------------------------------------------------------------- sample weights
@pytest.mark.parametrize("make", [
    lambda: small_mlp(), lambda: small_mlp(batch_size=50),
    lambda: MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
    lambda: Perceptron(), lambda: Perceptron(penalty="elasticnet")],
    ids=["mlp", "mlp-minibatch", "regressor", "perceptron", "perceptron-enet"])
def test_sample_weight_ones_equals_none(make):
    X, y = blobs()
    a = fit_quietly(make(), X, y)
    b = fit_quietly(make(), X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    if hasattr(a, "coefs_"):
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_array_equal(p, q)
    else:
        np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_integer_weights_equal_repeated_rows(cls):
    # full batches without shuffling: the weighted mean over the rows equals the plain
    # mean over the repeated rows; only the order of summation differs, so after 30
    # Adam steps in float64 the weights agree to ~1e-12 relative
    X, y = blobs(n=60)
    w = np.random.default_rng(1).integers(0, 4, len(y))
    params = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0, shuffle=False,
                  batch_size=1000, dtype="float64", learning_rate_init=0.01)
    weighted = fit_quietly(cls(**params), X, y, sample_weight=w)
    repeated = fit_quietly(cls(**params), np.repeat(X, w, axis=0), np.repeat(y, w))
    for p, q in zip(weighted.coefs_ + weighted.intercepts_,
                    repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)


def test_class_weight_balanced_raises_minority_recall():
    rng = np.random.default_rng(0)
    n_major, n_minor = 400, 25
    X = np.vstack([rng.normal(0.0, 1.0, (n_major, 2)), rng.normal(1.2, 1.0, (n_minor, 2))])
    y = np.r_[np.zeros(n_major, int), np.ones(n_minor, int)]
    def minority_recall(est):
        return np.mean(fit_quietly(est, X, y).predict(X[y == 1]) == 1)

    plain = minority_recall(small_mlp(hidden_layer_sizes=(8,)))
    balanced = minority_recall(small_mlp(hidden_layer_sizes=(8,), class_weight="balanced"))
    assert balanced > plain + 0.3, (plain, balanced)          # 0.20 -> 0.88
    # one perceptron's end point is a matter of luck (recall sd ~0.3 over seeds):
    # average over 10 seeds (scikit-learn's Perceptron: 0.34 -> 0.83 over 30 seeds)
    plain = np.mean([minority_recall(Perceptron(random_state=s)) for s in range(10)])
    balanced = np.mean([minority_recall(Perceptron(random_state=s, class_weight="balanced"))
                        for s in range(10)])
    assert balanced > plain + 0.2, (plain, balanced)
    with pytest.raises(ValueError, match="balanced"):
        small_mlp(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="balanced"):
        Perceptron(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    # a dict works too, and unknown labels in it are an error
    fit_quietly(small_mlp(class_weight={0: 1.0, 1: 10.0}), X, y)
    with pytest.raises(ValueError, match="class_weight"):
        small_mlp(class_weight={0: 1.0, 7: 2.0}).fit(X, y)


# --------------------------------------------------------------------------- extras
@pytest.fixture(scope="module")
def digits():
    return digits_split()


@pytest.fixture(scope="module")
def digits_baseline(digits):
    X_tr, X_te, y_tr, y_te = digits
    return fit_quietly(MLPClassifier(random_state=0, max_iter=60), X_tr, y_tr)


@pytest.mark.parametrize("extra", [{"dropout": 0.2}, {"batch_norm": True}, {"l1": 1e-4}],
                         ids=["dropout", "batch_norm", "l1"])
def test_extras_change_weights_and_keep_digits_accuracy(digits, digits_baseline, extra):
    X_tr, X_te, y_tr, y_te = digits
    est = fit_quietly(MLPClassifier(random_state=0, max_iter=60, **extra), X_tr, y_tr)
    assert not np.allclose(est.coefs_[0], digits_baseline.coefs_[0])
    assert est.score(X_te, y_te) > 0.95
    assert digits_baseline.score(X_te, y_te) > 0.95
    if "l1" in extra:   # the L1 term shrinks the first layer's absolute weights
        assert np.abs(est.coefs_[0]).sum() < np.abs(digits_baseline.coefs_[0]).sum()


def test_regressor_outputs_follow_dtype_and_shape():
    X, _ = blobs()
    y = X @ np.arange(1.0, 6.0)
    for dtype in ("float32", "float64"):
        est = fit_quietly(MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=0,
                                       learning_rate_init=0.01, dtype=dtype), X, y)
        assert est.predict(X).dtype == np.dtype(dtype) and est.predict(X).shape == (len(X),)
        assert est.score(X, y) > 0.9
        assert est.out_activation_ == "identity"
    two = fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), max_iter=20), X, np.c_[y, -y])
    assert two.predict(X).shape == (len(X), 2) and two.n_outputs_ == 2
    poisson = fit_quietly(MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=50,
                                       random_state=0), X, np.abs(y) / 10)
    assert poisson.out_activation_ == "exp" and np.all(poisson.predict(X) > 0)
    with pytest.raises(ValueError, match="non-negative"):
        MLPRegressor(loss="poisson").fit(X, y - 100)


def test_same_seed_same_weights_and_thread_independence(restore_threads):
    X, y = blobs(n=600, d=20, k=6)
    a = fit_quietly(small_mlp(dropout=0.1), X, y)
    b = fit_quietly(small_mlp(dropout=0.1), X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    restore_threads.set_num_threads(1)
    p1 = Perceptron(random_state=3).fit(X, y)
    restore_threads.set_num_threads(2)
    p2 = Perceptron(random_state=3).fit(X, y)
    np.testing.assert_array_equal(p1.coef_, p2.coef_)
    assert not np.array_equal(p1.coef_, Perceptron(random_state=4).fit(X, y).coef_)


def test_warm_start_and_early_stopping_attributes():
    X, y = blobs()
    est = fit_quietly(small_mlp(warm_start=True, max_iter=5), X, y)
    assert est.n_iter_ == 5 and len(est.loss_curve_) == 5
    first = est.coefs_[0].copy()
    fit_quietly(est, X, y)
    assert est.n_iter_ == 5 and len(est.loss_curve_) == 10 and est.t_ == 10 * len(X)
    assert not np.array_equal(first, est.coefs_[0])
    with pytest.raises(ValueError, match="warm_start"):
        est.fit(X, np.where(y == 2, 1, y))
    es = fit_quietly(small_mlp(early_stopping=True, max_iter=300, n_iter_no_change=3), X, y)
    assert len(es.validation_scores_) == es.n_iter_ < 300
    assert es.best_validation_score_ == max(es.validation_scores_)
    assert es.best_loss_ is None
    plain = fit_quietly(small_mlp(), X, y)
    assert plain.validation_scores_ is None and plain.best_loss_ == min(plain.loss_curve_)
    with pytest.raises(ValueError, match="early_stopping"):
        small_mlp(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_sgd_learning_rate_schedules():
    X, y = blobs()
    inv = fit_quietly(small_mlp(solver="sgd", learning_rate="invscaling", max_iter=4,
                                learning_rate_init=0.5, power_t=0.5), X, y)
    assert inv._optimizer.lr == pytest.approx(0.5 / (4 * len(X) + 1) ** 0.5)
    adaptive = fit_quietly(small_mlp(solver="sgd", learning_rate="adaptive", max_iter=50,
                                     tol=10.0, n_iter_no_change=1), X, y)
    # tol=10 means no epoch ever improves enough: every second epoch divides lr by 5
    # until it is <= 1e-6, then training stops
    assert adaptive._optimizer.lr <= 1e-6 < adaptive._optimizer.lr * 5
    assert adaptive.n_iter_ < 50


def test_verbose_prints_progress(capsys):
    X, y = blobs()
    fit_quietly(small_mlp(verbose=True, max_iter=3), X, y)
    assert capsys.readouterr().out.count("Iteration") == 3
    Perceptron(verbose=1, max_iter=2, tol=None).fit(X, y)
    assert capsys.readouterr().out.count("-- Epoch") == 2


def test_perceptron_attributes_and_sparse_coef():
    X, y = blobs()
    est = Perceptron(random_state=0).fit(X, y)
    assert est.coef_.shape == (3, 5) and est.intercept_.shape == (3,)
    assert est.decision_function(X).shape == (len(X), 3)
    assert est.t_ == 1 + est.n_iter_ * len(X)
    binary = Perceptron().fit(X, y == 0)
    assert binary.coef_.shape == (1, 5) and binary.decision_function(X).shape == (len(X),)
    pred = est.predict(X)
    est.sparsify()
    np.testing.assert_array_equal(est.predict(X), pred)
    est.densify()
    assert isinstance(est.coef_, np.ndarray)
    l1 = Perceptron(penalty="l1", alpha=0.05, random_state=0).fit(X, y)
    assert np.count_nonzero(l1.coef_) < l1.coef_.size


@pytest.mark.parametrize("how", ["fit", "partial_fit", "warm_start"])
def test_perceptron_float32_dtypes_as_sklearn(how):
    # scikit-learn: coef_ follows X's dtype; a binary problem's intercept_ stays the
    # kernel's float64 (so decision_function is float64), several classes store
    # theirs in a float32 array.
    X, y = blobs()
    X = X.astype(np.float32)
    for labels, k in ((y == 0, 1), (y, 3)):
        est = Perceptron(eta0=0.1, warm_start=how == "warm_start")
        if how == "partial_fit":
            est.partial_fit(X, labels, classes=np.unique(labels))
            est.partial_fit(X, labels)
        else:
            fit_quietly(est, X, labels)
            if how == "warm_start":
                fit_quietly(est, X, labels)
        assert est.coef_.dtype == np.float32 and est.coef_.shape == (k, X.shape[1])
        expected = np.float64 if k == 1 else np.float32
        assert est.intercept_.dtype == expected and est.intercept_.shape == (k,)
        assert est.decision_function(X).dtype == expected


@pytest.mark.parametrize("bad", [0, 2])
def test_perceptron_overflow_names_the_failing_problems_epoch(bad):
    # One one-vs-rest problem starts from a NaN intercept and fails in its first
    # epoch; the others run all 3. The error names the failing problem's epoch (as
    # scikit-learn, whose problems run one after the other), not the latest epoch.
    X, y = blobs(n=60, d=4)
    intercept_init = np.zeros(3)
    intercept_init[bad] = np.nan
    est = Perceptron(max_iter=3, tol=None)
    with pytest.raises(ValueError, match=r"under-/overflow occurred at epoch #1\. "):
        est.fit(X, y, intercept_init=intercept_init)
    assert not hasattr(est, "coef_")


@pytest.mark.parametrize("params", [
    {"penalty": "none"}, {"penalty": "L2"}, {"penalty": "Elasticnet"},
    {"alpha": np.inf}, {"alpha": np.nan}, {"tol": np.inf}, {"eta0": np.inf},
    {"verbose": -1}, {"verbose": "x"}, {"verbose": 1.5}, {"verbose": None},
    {"random_state": -1}, {"random_state": 2**32}, {"random_state": np.random.default_rng(0)},
    {"random_state": 1.5}, {"n_jobs": 1.5},
], ids=repr)
@pytest.mark.parametrize("how", ["fit", "partial_fit"])
def test_perceptron_rejects_what_sklearn_rejects(params, how):
    # scikit-learn's parameter constraints, checked when fitting; nothing is fitted.
    X, y = blobs(n=60, d=4)
    est = Perceptron(**params)
    with pytest.raises(ValueError, match=f"The '{next(iter(params))}' parameter of "
                                         "Perceptron must be"):
        if how == "fit":
            est.fit(X, y)
        else:
            est.partial_fit(X, y, classes=np.unique(y))
    assert not hasattr(est, "coef_")


@pytest.mark.parametrize("params", [
    {"penalty": None}, {"penalty": "elasticnet"}, {"tol": None}, {"tol": 0},
    {"alpha": True}, {"max_iter": True}, {"verbose": True}, {"verbose": np.bool_(False)},
    {"random_state": 0}, {"random_state": 2**32 - 1}, {"random_state": np.uint32(7)},
    {"random_state": True}, {"random_state": np.random.RandomState(0)},
    {"n_jobs": -1}, {"n_jobs": 2},
], ids=repr)
def test_perceptron_accepts_what_sklearn_accepts(params, capsys):
    X, y = blobs(n=60, d=4)
    est = fit_quietly(Perceptron(**{"max_iter": 5, **params}), X, y)
    assert est.coef_.shape == (3, 4)


def test_perceptron_n_jobs_zero_only_fails_for_several_classes():
    # scikit-learn hands several one-vs-rest problems to joblib, which refuses n_jobs=0;
    # a binary problem is fitted directly.
    X, y = blobs(n=60, d=4)
    est = Perceptron(n_jobs=0)
    with pytest.raises(ValueError, match="n_jobs == 0 in Parallel has no meaning"):
        est.fit(X, y)
    assert not hasattr(est, "coef_")
    with pytest.raises(ValueError, match="n_jobs == 0 in Parallel has no meaning"):
        est.partial_fit(X, y, classes=[0, 1, 2])
    assert fit_quietly(est, X, y == 0).coef_.shape == (1, 4)


def test_negative_weights_perceptron_takes_them_mlps_refuse_them():
    # scikit-learn's Perceptron accepts negative sample and class weights (a negative
    # weight reverses the update); fastnn's MLPs keep refusing them.
    X, y = blobs(n=60, d=4)
    sw = np.ones(len(y))
    sw[0] = -0.5
    est = fit_quietly(Perceptron(shuffle=False, class_weight={0: -1.0}), X, y,
                      sample_weight=sw)
    assert est.coef_.shape == (3, 4) and np.isfinite(est.coef_).all()
    # one update with a negative weight moves the weights against the label
    one = Perceptron(shuffle=False, fit_intercept=False)
    one.partial_fit(X[:1], [0], classes=[0, 1], sample_weight=[-2.0])
    np.testing.assert_array_equal(one.coef_, 2.0 * X[:1])
    with pytest.raises(ValueError, match="finite"):
        Perceptron(class_weight={0: np.inf}).fit(X, y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        Perceptron().fit(X, y, sample_weight=np.r_[np.nan, np.ones(len(y) - 1)])
    with pytest.raises(ValueError, match="non-negative"):
        small_mlp().fit(X, y, sample_weight=sw)
    with pytest.raises(ValueError, match="non-negative"):
        small_mlp(class_weight={0: -1.0}).fit(X, y)


@pytest.mark.parametrize("y, fraction, match", [
    (np.arange(60) % 10, 0.1, "The test_size = 6 should be greater or equal to the number "
                              "of classes = 10"),
    (np.arange(20) % 10, 0.6, "The train_size = 8 should be greater or equal to the number "
                              "of classes = 10"),
    (np.r_[np.zeros(59), 1], 0.1, r"only 1 member, .* Classes with too few members are: "
                                  r"\[1\.0\]"),
    (np.r_[np.arange(59) % 2, 2], 0.1, r"only 1 member, .* members are: \[2\]"),
    (np.arange(10) % 2, 0.95, "With n_samples=10, test_size=0.95 and train_size=None, the "
                              "resulting train set will be empty"),
], ids=["val<classes", "train<classes", "binary-single", "multi-single", "empty-train"])
def test_perceptron_early_stopping_refuses_unstratifiable_splits(y, fraction, match):
    # as scikit-learn's StratifiedShuffleSplit (on the +1/-1 targets for two classes)
    X = np.random.default_rng(0).normal(size=(len(y), 3))
    est = Perceptron(early_stopping=True, validation_fraction=fraction)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "coef_")


# ------------------------------------------------------------------ input validation
@pytest.mark.parametrize("make", [small_mlp, lambda: Perceptron(),
                                  lambda: MLPRegressor(max_iter=5)],
                         ids=["MLPClassifier", "Perceptron", "MLPRegressor"])
def test_bad_input_raises_and_failed_fit_changes_nothing(make):
    X, y = blobs()
    est = fit_quietly(make(), X, y)
    state = pickle.dumps(est)
    pred = est.predict(X)
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    X_inf = X.copy()
    X_inf[0, 0] = np.inf
    bad = [
        ((X_nan, y), "NaN"), ((X_inf, y), "infinity"), ((X[:, :3], y), "features"),
        ((X[:0], y[:0]), "0 sample"), ((X[:, :0], y), "0 feature"),
        ((X[:, :, None], y), "dim 3"), ((X[0], y), "Reshape"), ((X, y[:-1]), "inconsistent"),
    ]
    for args, match in bad:
        with pytest.raises(ValueError, match=match):
            # a new fit may change the width; continuing (partial_fit) may not
            (est.partial_fit if match == "features" else est.fit)(*args)
        assert pickle.dumps(est) == state
    for X_bad, match in [(X_nan, "NaN"), (X[:, :3], "3 features"), (X[:, :, None], "dim 3")]:
        with pytest.raises(ValueError, match=match):
            est.predict(X_bad)
    np.testing.assert_array_equal(est.predict(X), pred)


@pytest.mark.parametrize("params, match", [
    ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": 0}, "hidden_layer_sizes"),
    ({"solver": "lbfgs", "dropout": 0.1}, "lbfgs"), ({"solver": "newton"}, "solver"),
    ({"activation": "swish"}, "activation"), ({"learning_rate": "cosine"}, "learning_rate"),
    ({"alpha": -1.0}, "alpha"), ({"learning_rate_init": 0.0}, "learning_rate_init"),
    ({"dropout": 1.0}, "dropout"), ({"l1": -0.1}, "l1"), ({"dtype": "int32"}, "dtype"),
    ({"batch_size": 0}, "batch_size"), ({"momentum": 1.5}, "momentum"),
    ({"max_iter": 0}, "max_iter"), ({"validation_fraction": 1.0}, "validation_fraction"),
])
def test_bad_parameters_raise_at_fit(params, match):
    X, y = blobs()
    est = small_mlp(**params)              # constructors never validate (sklearn rule)
    assert est.get_params()[next(iter(params))] == next(iter(params.values()))
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")


def test_failed_training_rolls_back():
    # a warm-started fit that diverges (huge learning rate on huge targets) raises and
    # leaves the fitted model exactly as it was, optimizer state included
    X, _ = blobs()
    y = X[:, 0] * 1e30
    est = fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                                   warm_start=True, solver="sgd", learning_rate_init=1e-40),
                      X, y)
    state = pickle.dumps(est)
    est.set_params(learning_rate_init=1e10)
    with pytest.raises(ValueError):
        fit_quietly(est, X, y)
    est.set_params(learning_rate_init=1e-40)
    assert pickle.dumps(est) == state
    # the perceptron: a warm start that fails validation (class weights for a label
    # that is not a class) leaves the coefficients alone
    p = Perceptron(warm_start=True, max_iter=3, tol=None).fit(X, X[:, 0] > 0)
    coef = p.coef_.copy()
    with pytest.raises(ValueError, match="class_weight"):
        p.set_params(class_weight={7: 1.0}).fit(X, X[:, 0] > 0)
    np.testing.assert_array_equal(p.coef_, coef)


def test_fit_that_diverges_after_some_epochs_rolls_back_the_curves():
    # two epochs complete before the loss overflows: their losses (and validation
    # scores) must not stay in the lists a warm start appends to
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5)
    for early in (False, True):
        est = fit_quietly(MLPRegressor(hidden_layer_sizes=(10,), solver="sgd", max_iter=5,
                                       random_state=0, warm_start=True,
                                       early_stopping=early), X, y)
        curves = (list(est.loss_curve_), list(est.validation_scores_ or []))
        state = pickle.dumps(est)
        est.set_params(learning_rate_init=10.0)
        with pytest.raises(ValueError, match="diverged"):
            fit_quietly(est, X * 100, y * 1000)
        assert (est.loss_curve_, est.validation_scores_ or []) == curves
        est.set_params(learning_rate_init=0.001)
        assert pickle.dumps(est) == state


def test_batch_norm_with_one_row_per_batch_raises():
    X, y = blobs()
    est = fit_quietly(small_mlp(batch_norm=True, warm_start=True), X, y)
    state = pickle.dumps(est)
    with pytest.raises(ValueError, match="batch_size=1"):
        fit_quietly(est.set_params(batch_size=1), X, y)
    assert pickle.dumps(est.set_params(batch_size="auto")) == state


def test_coefs_and_intercepts_can_be_assigned():
    X, y = blobs()
    est = fit_quietly(small_mlp(), X, y)
    with pytest.raises(AttributeError, match="once fit"):
        small_mlp().coefs_ = [np.zeros((5, 16)), np.zeros((16, 3))]
    before = pickle.dumps(est)
    for bad, match in [([np.zeros((5, 16))], "2 arrays"),
                       ([np.zeros((5, 16)), np.zeros((16, 2))], r"coefs_\[1\] must have shape")]:
        with pytest.raises(ValueError, match=match):
            est.coefs_ = bad
        assert pickle.dumps(est) == before          # nothing written on a failed call
    est.coefs_ = [np.zeros_like(c, dtype=np.float64) for c in est.coefs_]
    est.intercepts_ = [np.zeros(c.shape).tolist() for c in est.intercepts_]
    assert all(not c.any() for c in est.coefs_ + est.intercepts_)
    assert est.coefs_[0].dtype == np.float32                  # the network's dtype
    np.testing.assert_allclose(est.predict_proba(X), 1 / len(est.classes_))
    # one layer at a time, as scikit-learn users also write, reaches the network too
    coefs = est.coefs_
    coefs[1] = np.ones((16, 3))
    est.intercepts_[1] = [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(est.coefs_[1], 1.0)
    np.testing.assert_array_equal(est.intercepts_[1], [0, 1, 2])
    with pytest.raises(ValueError, match=r"intercepts_\[0\] must have shape \(16,\)"):
        est.intercepts_[0] = np.ones(3)
    with pytest.raises(TypeError, match="one layer"):
        est.coefs_[:1] = [np.ones((5, 16))]
    assert not est.coefs_[0].any() and not est.intercepts_[0].any()


def test_lbfgs_solver():
    X, y = blobs()
    est = fit_quietly(small_mlp(solver="lbfgs", max_iter=50, early_stopping=True), X, y)
    assert est.score(X, y) > 0.95 and 1 <= est.n_iter_ <= 50 and np.isfinite(est.loss_)
    # scikit-learn keeps no curve or stopping state for lbfgs, and ignores early_stopping
    for attr in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
        assert not hasattr(est, attr)
    with pytest.raises(AttributeError, match="lbfgs is not stochastic"):
        est.partial_fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge") as caught:
        small_mlp(solver="lbfgs", max_iter=2).fit(X, y)
        small_mlp(solver="lbfgs", max_fun=3).fit(X, y)
    by_iterations, by_evaluations = (str(w.message) for w in caught)
    # the advice to raise max_iter only where max_iter is what stopped it
    assert "ITERATIONS" in by_iterations and "(max_iter=2)" in by_iterations
    assert "EVALUATIONS" in by_evaluations and "max_iter" not in by_evaluations
    # a warm start continues from the weights, and a failed one changes nothing
    state = pickle.dumps(est)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.set_params(warm_start=True).fit(X_nan, y)
    assert pickle.dumps(est.set_params(warm_start=False)) == state
    reg = fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0),
                      X, X[:, 0] - 2 * X[:, 1])
    assert reg.score(X, X[:, 0] - 2 * X[:, 1]) > 0.99


def test_unfitted_and_params():
    est = small_mlp()
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((2, 5)))
    with pytest.raises(NotFittedError):
        Perceptron().decision_function(np.zeros((2, 5)))
    assert est.set_params(alpha=0.5) is est and est.alpha == 0.5
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(not_a_param=1)
    assert "alpha=0.5" in repr(est)


class _Frame:
    """The DataFrame protocol the estimators use: columns, to_numpy, shape."""

    def __init__(self, data, columns):
        self._data, self.columns = np.asarray(data), list(columns)
        self.shape = self._data.shape

    def to_numpy(self):
        return self._data

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)


def test_feature_names_from_dataframe_like_input():
    X, y = blobs()
    names = [f"f{i}" for i in range(5)]
    for est in (small_mlp(), Perceptron()):
        fit_quietly(est, _Frame(X, names), y)
        assert est.feature_names_in_.tolist() == names and est.n_features_in_ == 5
        est.predict(_Frame(X, names))
        with pytest.warns(UserWarning, match="does not have valid feature names"):
            est.predict(X)
        with pytest.raises(ValueError, match="feature names should match"):
            est.predict(_Frame(X, names[::-1]))
        fit_quietly(est, X, y)
        assert not hasattr(est, "feature_names_in_")


def test_works_without_scikit_learn():
    # scikit-learn is optional: hide it and use the stand-in base classes
    code = """
import sys
sys.modules["sklearn"] = None
import numpy as np, pickle, warnings
import fastnn
from fastnn.estimators import _base
assert not _base.HAVE_SKLEARN
rng = np.random.default_rng(0)
X = rng.normal(size=(120, 4)); y = np.where(X[:, 0] > 0, "pos", "neg")
warnings.simplefilter("ignore")
for est in (fastnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0,
                                 learning_rate_init=0.05),
            fastnn.Perceptron()):
    est.fit(X, y)
    assert est.score(X, y) > 0.8, est.score(X, y)
    assert est.get_params()["random_state"] == est.random_state
    est.set_params(random_state=1)
    assert type(est).__mro__[1].__module__.startswith("fastnn")
    twin = pickle.loads(pickle.dumps(est))
    assert (twin.predict(X) == est.predict(X)).all()
reg = fastnn.MLPRegressor(hidden_layer_sizes=(8,), max_iter=100, random_state=0,
                          learning_rate_init=0.01).fit(X, X[:, 0])
assert reg.score(X, X[:, 0]) > 0.5
print(repr(fastnn.MLPClassifier(alpha=0.1)))
"""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MLPClassifier(alpha=0.1)"
