"""fastnn.Perceptron: scikit-learn's Perceptron with a compiled update loop."""
import numbers
import os

import numpy as np

from .._config import MAX_THREADS, get_num_threads
from .._kernels import perceptron as _kernel
from ._base import ClassifierMixin, FastnnEstimator, check_random_state_seed, warn_convergence
from ._checks import (
    _is_sparse, check_bool_param, check_classification_y, check_int_param, check_n_features,
    check_random_state_param, check_real_param, check_sample_weight, check_stratified_split,
    check_verbose_param, check_X, invalid_parameter,
    compute_class_weight, encode_labels, get_feature_names, train_val_split, unique_labels,
    validate_predict_X,
)

_PENALTIES = {None: 0, "l1": 1, "l2": 2, "elasticnet": 3}


class Perceptron(ClassifierMixin, FastnnEstimator):
    """Linear perceptron classifier, a drop-in for ``sklearn.linear_model.Perceptron``.

    Same constructor parameters, attributes and methods as scikit-learn's class
    (which is SGD with the perceptron loss and a constant learning rate ``eta0``).
    Several classes are handled one-vs-rest; the binary problems run in parallel
    in the compiled kernel ``fastnn._kernels.perceptron``. Sparse X is trained in
    CSR form with scikit-learn's sparse semantics (updates and the L1 truncation over
    each row's stored entries, intercept updates scaled by 0.01).

    Differences from scikit-learn: shuffling and the ``early_stopping`` validation split
    use fastnn's own seeded generator, so with either the weights are not bit-identical
    to scikit-learn's for the same ``random_state`` (accuracy is on par; with
    ``shuffle=False`` and no early stopping they agree to rounding); ``n_jobs`` sets the
    kernel's thread count (None: ``fastnn.get_num_threads()``), and results do not
    depend on it.

    Parameters
    ----------
    penalty : {'l2', 'l1', 'elasticnet'} or None, default=None
        Regularisation term.
    alpha : float, default=1e-4
        Constant that multiplies the regularisation term.
    l1_ratio : float in [0, 1], default=0.15
        Elastic-net mixing (1 is pure L1); used with ``penalty='elasticnet'``.
    fit_intercept : bool, default=True
    max_iter : int, default=1000
        Maximum number of passes over the training data (epochs).
    tol : float or None, default=1e-3
        Stop when the objective (or validation accuracy with early stopping) has not
        improved by ``tol`` for ``n_iter_no_change`` epochs; None disables the test.
    shuffle : bool, default=True
    verbose : int, default=0
        Print one line per epoch and problem.
    eta0 : float, default=1.0
        Learning rate.
    n_jobs : int or None, default=None
    random_state : int, RandomState instance or None, default=0
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the data and stop on its
        accuracy.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int, default=5
    class_weight : dict, 'balanced' or None, default=None
    warm_start : bool, default=False

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) if n_classes == 2 else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) if n_classes == 2 else (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,), when X has string column names
    n_iter_ : int
        Epochs run (the maximum over the one-vs-rest problems).
    t_ : float
        Number of weight updates during training, as scikit-learn counts it
        (``1 + n_iter_ * n_samples`` after one fit).
    """

    def __init__(self, *, penalty=None, alpha=0.0001, l1_ratio=0.15, fit_intercept=True,
                 max_iter=1000, tol=1e-3, shuffle=True, verbose=0, eta0=1.0, n_jobs=None,
                 random_state=0, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, class_weight=None, warm_start=False):
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.eta0 = eta0
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start

    # ------------------------------------------------------------------ params
    def _check_params(self, for_partial_fit=False):
        # scikit-learn's _parameter_constraints for Perceptron, checked at fit and
        # partial_fit as it does (its InvalidParameterError is a ValueError)
        if not (self.penalty is None or (isinstance(self.penalty, str)
                                         and self.penalty in ("l2", "l1", "elasticnet"))):
            raise _invalid("penalty", "a str among {'elasticnet', 'l1', 'l2'} or None",
                           self.penalty)
        _check_real(self.alpha, "alpha", low=0.0)
        _check_real(self.l1_ratio, "l1_ratio", low=0.0, high=1.0)
        _check_real(self.eta0, "eta0", low=0.0, low_open=True)
        if self.tol is not None:
            _check_real(self.tol, "tol", low=0.0, also="None")
        _check_int(self.max_iter, "max_iter", low=1)
        _check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        _check_real(self.validation_fraction, "validation_fraction", low=0.0, high=1.0,
                    low_open=True, high_open=True)
        for name in ("fit_intercept", "shuffle", "early_stopping", "warm_start"):
            check_bool_param(getattr(self, name), name, "Perceptron")
        check_verbose_param(self.verbose, "Perceptron")
        if not (self.class_weight is None or self.class_weight == "balanced"
                or isinstance(self.class_weight, dict)):
            raise _invalid("class_weight", "a str among {'balanced'}, an instance of 'dict' "
                           "or None", self.class_weight)
        if for_partial_fit:
            if self.early_stopping:
                raise ValueError("early_stopping should be False with partial_fit")
            if self.class_weight == "balanced":
                raise ValueError(
                    "class_weight 'balanced' is not supported for partial_fit: compute "
                    "the weights once from a large enough sample of y (n_samples / "
                    "(n_classes * count)) and pass them as a dict.")
        if self.n_jobs is not None and not isinstance(self.n_jobs, numbers.Integral):
            raise _invalid("n_jobs", "an instance of 'int' or None", self.n_jobs)
        check_random_state_param(self.random_state, "Perceptron")
        return _PENALTIES[self.penalty]

    def _threads(self):
        if self.n_jobs is None:
            return get_num_threads()
        if self.n_jobs < 0:
            return max(1, (os.cpu_count() or 1) + 1 + self.n_jobs)
        # more threads than problems or cores run nothing more (as joblib's workers)
        return max(1, min(int(self.n_jobs), MAX_THREADS))

    # --------------------------------------------------------------------- fit
    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        """Fit the linear model with the perceptron rule.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        coef_init : ndarray of shape (n_classes, n_features), optional
            Initial coefficients (warm start).
        intercept_init : ndarray of shape (n_classes,), optional
        sample_weight : array-like of shape (n_samples,), optional
            Multiplied with the class weights.

        Returns
        -------
        self
        """
        penalty = self._check_params()
        if self.warm_start and hasattr(self, "coef_"):
            if coef_init is None:
                coef_init = self.coef_
            if intercept_init is None:
                intercept_init = self.intercept_
        self._train(X, y, classes=None, sample_weight=sample_weight, max_iter=self.max_iter,
                    penalty=penalty, reset=True, coef_init=coef_init,
                    intercept_init=intercept_init)
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch of the perceptron rule over (X, y).

        ``classes`` (all labels that will ever be seen) is required on the first
        call; later calls must use only those labels.
        """
        first = not hasattr(self, "classes_")
        penalty = self._check_params(for_partial_fit=first)
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        self._train(X, y, classes=classes, sample_weight=sample_weight, max_iter=1,
                    penalty=penalty, reset=first, coef_init=None, intercept_init=None,
                    incremental=True)
        return self

    def _train(self, X, y, *, classes, sample_weight, max_iter, penalty, reset,
               coef_init, intercept_init, incremental=False):
        name = type(self).__name__
        # ---- validate everything before touching self
        names = get_feature_names(X)
        if not reset:
            from ._checks import check_feature_names
            check_feature_names(self, X)
        X = check_X(X, (np.float64, np.float32), estimator_name=name, accept_sparse=True)
        sparse = _is_sparse(X)
        n, d = X.shape
        if not reset:
            check_n_features(self, d)
        y, _ = check_classification_y(y, n)
        if reset and not incremental:
            classes_ = unique_labels(y)
        elif incremental and classes is not None:
            classes_ = unique_labels(np.asarray(classes))
            if hasattr(self, "classes_") and not np.array_equal(classes_, self.classes_):
                raise ValueError(
                    f"`classes={classes_!r}` is not the same as on last call to "
                    f"partial_fit, was: {self.classes_!r}")
        else:
            classes_ = self.classes_
        if len(classes_) < 2:
            raise ValueError(
                "The number of classes has to be greater than one; got "
                f"{len(classes_)} class")
        y_idx = encode_labels(y, classes_)
        dtype = X.dtype
        # scikit-learn's Perceptron takes negative (finite) sample and class weights
        sw = check_sample_weight(sample_weight, n, np.float64,
                                 allow_all_zero=bool(self.early_stopping),
                                 allow_negative=True)
        cw = compute_class_weight(self.class_weight, classes_, y_idx, allow_negative=True)
        n_classes = len(classes_)
        k = 1 if n_classes == 2 else n_classes
        if k > 1 and self.n_jobs == 0:
            # scikit-learn runs several one-vs-rest problems through joblib, which
            # refuses n_jobs=0 (a binary problem never reaches it)
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if coef_init is not None:
            if _is_sparse(coef_init):
                coef_init = coef_init.toarray()
            W = np.array(coef_init, dtype=dtype, order="C")
            if k == 1:
                W = W.reshape(1, -1)
            if W.shape != (k, d):
                raise ValueError(
                    f"Provided coef_init has shape {np.shape(coef_init)}; expected "
                    f"{(n_classes, d) if k > 1 else (d,)}.")
        elif not reset and hasattr(self, "coef_"):
            W = self._dense_coef().astype(dtype, copy=True)
        else:
            W = np.zeros((k, d), dtype=dtype)
        if intercept_init is not None:
            B = np.array(intercept_init, dtype=np.float64).reshape(-1)
            if B.shape != (k,):
                raise ValueError(
                    f"Provided intercept_init has shape {np.shape(intercept_init)}; "
                    f"expected {(k,)}.")
        elif not reset and hasattr(self, "intercept_"):
            B = np.array(self.intercept_, dtype=np.float64).reshape(-1)
        else:
            B = np.zeros(k, dtype=np.float64)

        # one-vs-rest targets and class weights (scikit-learn: binary uses
        # cw[1] / cw[0] for the positive / negative class, several classes use
        # cw[i] / 1.0)
        if k == 1:
            Y = np.where(y_idx == 1, 1.0, -1.0).astype(dtype)[None, :]
            pos, neg = np.array([cw[1]]), np.array([cw[0]])
        else:
            Y = np.where(y_idx[None, :] == np.arange(k)[:, None], 1.0, -1.0).astype(dtype)
            pos, neg = cw.astype(np.float64), np.ones(k)
        seed = check_random_state_seed(self.random_state)
        val_mask = np.zeros(n, dtype=np.uint8)
        if self.early_stopping:
            # scikit-learn splits with StratifiedShuffleSplit: on the labels for several
            # classes, on the +1/-1 targets for two
            check_stratified_split(classes_[y_idx] if k > 1 else Y[0], self.validation_fraction)
            _, val = train_val_split(n, self.validation_fraction, seed,
                                     stratify=y_idx if k > 1 else (y_idx == 1))
            if not np.any(sw[val] > 0):
                raise ValueError(
                    "The sample weights for validation set are all zero, consider using "
                    "a different random state.")
            val_mask[val] = 1
        seeds = np.random.default_rng(seed).integers(0, 2**63 - 1, size=k, dtype=np.int64)
        seeds = seeds.astype(np.uint64)

        # ---- train on copies; commit only on success
        t0 = float(getattr(self, "t_", 1.0)) if incremental else 1.0
        state = _kernel.new_state(k, t0, bool(self.early_stopping))
        Q = np.zeros((k, d), dtype=dtype)
        order = np.tile(np.arange(n, dtype=np.intp), (k, 1))
        tol = -np.inf if self.tol is None else float(self.tol)
        # as scikit-learn's kernel: l1_ratio only matters for the elastic net
        l1_ratio = {1: 1.0, 2: 0.0}.get(penalty, float(self.l1_ratio))
        if sparse:
            # scikit-learn's sparse path: the row's stored entries only, and intercept
            # updates scaled by its SPARSE_INTERCEPT_DECAY (0.01)
            fit = _kernel.fit_ovr_sparse
            Xargs = (np.ascontiguousarray(X.data), np.ascontiguousarray(X.indices, np.intp),
                     np.ascontiguousarray(X.indptr, np.intp), d)
        else:
            fit = _kernel.fit_ovr
            Xargs = (X,)
        args = (*Xargs, Y, sw.astype(dtype), val_mask, W, B, Q, order, state, seeds, pos, neg)
        kwargs = dict(penalty=penalty, alpha=float(self.alpha),
                      l1_ratio=l1_ratio, eta=float(self.eta0),
                      fit_intercept=bool(self.fit_intercept), tol=tol,
                      n_iter_no_change=int(self.n_iter_no_change),
                      shuffle=bool(self.shuffle), early_stopping=bool(self.early_stopping),
                      n_threads=self._threads())
        F = _kernel.STATE_FIELDS
        if self.verbose:
            for epoch in range(max_iter):
                if np.all(state[:, F["done"]] != 0):
                    break
                fit(*args, n_epochs=1, **kwargs)
                self._print_epoch(epoch, W, B, state, n - int(val_mask.sum()))
        else:
            fit(*args, n_epochs=max_iter, **kwargs)
        failed = np.flatnonzero(state[:, F["nonfinite"]] != 0)
        if failed.size:
            # as scikit-learn, whose one-vs-rest problems run in class order: the
            # epoch at which the first failing problem over/underflowed
            epoch = int(state[failed[0], F["epochs"]])
            raise ValueError(
                f"Floating-point under-/overflow occurred at epoch #{epoch}. Scaling "
                "input data with StandardScaler or MinMaxScaler might help.")
        n_iter = int(state[:, F["epochs"]].max())

        # ---- commit
        self.classes_ = classes_
        self.n_features_in_ = d
        if reset:
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        self.coef_ = W
        # as scikit-learn: a binary problem keeps its float64 intercept, several
        # problems store theirs in an array of X's dtype
        self.intercept_ = B.astype(dtype) if k > 1 else B
        self.n_iter_ = n_iter
        self.t_ = t0 + n_iter * n
        if not incremental and self.tol is not None and n_iter == max_iter:
            warn_convergence(
                "Maximum number of iteration reached before convergence. Consider "
                "increasing max_iter to improve the fit.")

    def _print_epoch(self, epoch, W, B, state, n_train):
        F = _kernel.STATE_FIELDS
        print(f"-- Epoch {epoch + 1}")
        for c in range(W.shape[0]):
            line = (f"Norm: {np.linalg.norm(W[c]):.2f}, NNZs: {np.count_nonzero(W[c])}, "
                    f"Bias: {B[c]:.6f}, T: {int(state[c, F['t']]) - 1}, "
                    f"Avg. loss: {state[c, F['sumloss']] / n_train:.6f}")
            if self.early_stopping:
                line += f", Validation score: {state[c, F['score']]:.6f}"
            print(line)

    # ----------------------------------------------------------------- predict
    def _dense_coef(self):
        return self.coef_.toarray() if _is_sparse(self.coef_) else np.asarray(self.coef_)

    def decision_function(self, X):
        """Signed distance to the hyperplane(s): shape (n,) for two classes, else
        (n, n_classes)."""
        X = validate_predict_X(self, X, (np.float64, np.float32))
        if _is_sparse(self.coef_):
            scores = np.asarray((self.coef_ @ X.T).T)
        else:
            scores = X @ self.coef_.T
        scores = scores + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Class labels for X (from ``classes_``)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            idx = (scores > 0).astype(np.intp)
        else:
            idx = scores.argmax(axis=1)
        return self.classes_[idx]

    def densify(self):
        """Convert a sparse ``coef_`` back to a dense array; returns self."""
        self._check_is_fitted()
        if _is_sparse(self.coef_):
            self.coef_ = self.coef_.toarray()
        return self

    def sparsify(self):
        """Store ``coef_`` as a scipy.sparse CSR matrix (useful with many zeros from
        L1); predictions are unchanged. Returns self."""
        self._check_is_fitted()
        import scipy.sparse
        self.coef_ = scipy.sparse.csr_matrix(self.coef_)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


def _invalid(name, what, value):
    return invalid_parameter("Perceptron", name, what, value)


def _check_real(value, name, **kwargs):
    check_real_param(value, name, "Perceptron", **kwargs)


def _check_int(value, name, low, what=None):
    check_int_param(value, name, "Perceptron", low, what=what)
