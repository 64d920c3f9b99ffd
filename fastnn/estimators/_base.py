"""scikit-learn compatibility for fastnn's estimators, with or without scikit-learn.

When scikit-learn is importable, the estimators inherit from its ``BaseEstimator``,
``ClassifierMixin`` and ``RegressorMixin`` and raise its warning and error classes, so
they are real scikit-learn estimators (tags, ``clone``, metadata routing, HTML repr).
Without it, small stand-ins below give the same contract: ``get_params`` and
``set_params`` by constructor introspection, ``score``, ``repr``.

Input validation is fastnn's own in both cases (see ``_checks.py``), so an estimator
behaves the same whether scikit-learn is installed or not.
"""
import functools
import inspect
import types
import warnings

import numpy as np

try:  # scikit-learn is optional: used when present, never required.
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False

    class ConvergenceWarning(UserWarning):
        """The optimizer stopped at max_iter before the stopping criterion held."""

    class DataConversionWarning(UserWarning):
        """The input was converted (e.g. a column-vector y flattened)."""

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before ``fit``."""

    class _BaseEstimator:
        """Minimal stand-in for ``sklearn.base.BaseEstimator``.

        Parameters are the named arguments of ``__init__``; each is stored unchanged
        as an attribute of the same name (the scikit-learn contract), so
        ``get_params`` reads them back and ``set_params`` writes them.
        """

        @classmethod
        def _get_param_names(cls):
            init = cls.__init__
            if init is object.__init__:
                return []
            sig = inspect.signature(init)
            names = []
            for p in sig.parameters.values():
                if p.name == "self" or p.kind == p.VAR_KEYWORD:
                    continue
                if p.kind == p.VAR_POSITIONAL:
                    raise RuntimeError(f"{cls.__name__} must not take *args in __init__")
                names.append(p.name)
            return sorted(names)

        def get_params(self, deep=True):
            out = {}
            for name in self._get_param_names():
                value = getattr(self, name)
                if deep and hasattr(value, "get_params") and not isinstance(value, type):
                    out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
                out[name] = value
            return out

        def set_params(self, **params):
            if not params:
                return self
            valid = self.get_params(deep=True)
            nested = {}
            for key, value in params.items():
                name, delim, sub = key.partition("__")
                if name not in valid:
                    raise ValueError(
                        f"Invalid parameter {name!r} for estimator {self!r}. Valid "
                        f"parameters are: {sorted(self._get_param_names())!r}.")
                if delim:
                    nested.setdefault(name, {})[sub] = value
                else:
                    setattr(self, name, value)
                    valid[name] = value
            for name, sub_params in nested.items():
                valid[name].set_params(**sub_params)
            return self

        def __repr__(self):
            defaults = {
                p.name: p.default
                for p in inspect.signature(type(self).__init__).parameters.values()
                if p.default is not p.empty
            }
            changed = []
            for name in self._get_param_names():
                value = getattr(self, name)
                default = defaults.get(name, inspect.Parameter.empty)
                if _param_differs(value, default):
                    changed.append(f"{name}={value!r}")
            return f"{type(self).__name__}({', '.join(changed)})"

    class ClassifierMixin:
        """Stand-in for ``sklearn.base.ClassifierMixin``: accuracy as ``score``."""
        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None):
            """Mean accuracy of ``self.predict(X)`` against ``y`` (weighted if given)."""
            y = np.asarray(y)
            pred = self.predict(X)
            if y.ndim == 2 and y.shape[1] > 1:  # multilabel: exact row matches
                correct = np.all(pred == y, axis=1)
            else:
                correct = pred == y.reshape(pred.shape)
            return float(np.average(correct, weights=sample_weight))

    class RegressorMixin:
        """Stand-in for ``sklearn.base.RegressorMixin``: R^2 as ``score``."""
        _estimator_type = "regressor"

        def score(self, X, y, sample_weight=None):
            """Coefficient of determination R^2 (uniform average over outputs)."""
            pred = np.asarray(self.predict(X), dtype=np.float64)
            y = np.asarray(y, dtype=np.float64).reshape(pred.shape)
            return r2_score(y, pred, sample_weight=sample_weight)


def _param_differs(value, default):
    if default is inspect.Parameter.empty:
        return True
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return True
    try:
        return bool(value != default) or type(value) is not type(default)
    except Exception:
        return True


def r2_score(y, pred, sample_weight=None):
    """R^2 as scikit-learn defines it (uniform average over outputs; 1.0 for a
    perfect fit of a constant target, 0.0 for an imperfect one)."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
        pred = pred.reshape(-1, 1)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    w = w[:, None]
    num = (w * (y - pred) ** 2).sum(axis=0)
    mean = (w * y).sum(axis=0) / w.sum()
    den = (w * (y - mean) ** 2).sum(axis=0)
    scores = np.ones(y.shape[1])
    ok = den != 0
    scores[ok] = 1.0 - num[ok] / den[ok]
    scores[~ok & (num != 0)] = 0.0
    return float(scores.mean())


class FastnnEstimator(_BaseEstimator):
    """Behaviour shared by fastnn's estimators (tags, fitted check, rollback)."""

    # Tags for scikit-learn < 1.6 (dictionary tags).
    def _more_tags(self):
        return {"allow_nan": False, "requires_y": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True       # accepted (densified; see _checks.check_X)
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "n_features_in_")

    def _check_is_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator.")

    def _snapshot(self):
        """What a failed fit must put back: the attribute dict, with copies of the
        lists that epochs append to (loss_curve_, validation_scores_), and copies of
        every mutable array that training writes in place."""
        attrs = {k: list(v) if isinstance(v, list) else v for k, v in self.__dict__.items()}
        return attrs, [(a, a.copy()) for a in self._mutable_arrays()]

    def _restore(self, snapshot):
        attrs, arrays = snapshot
        for a, saved in arrays:
            a[...] = saved
        self.__dict__.clear()
        self.__dict__.update(attrs)

    def _mutable_arrays(self):
        """Arrays the training step updates in place (overridden by subclasses)."""
        return []


def check_random_state_seed(random_state):
    """A 63-bit integer seed from scikit-learn's ``random_state`` forms.

    None draws from NumPy's global RandomState (as scikit-learn does), an int (a bool
    too, as scikit-learn's check_random_state takes it) is used as is, a RandomState or
    Generator is advanced by one draw.
    """
    if random_state is None or random_state is np.random:
        return int(np.random.randint(0, 2**31 - 1)) * 2**31 + int(np.random.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)):
        return int(random_state) % 2**63
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1)) * 2**31 + int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError(
        f"random_state must be None, an int, a numpy RandomState or Generator; "
        f"got {random_state!r}")


class available_if:
    """A method that exists only while ``check(self)`` returns without raising
    AttributeError (scikit-learn's ``available_if``): ``hasattr`` then says False, as
    scikit-learn's own estimators do for, say, partial_fit under lbfgs."""

    def __init__(self, check):
        self.check = check

    def __call__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)
        return self

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.fn
        self.check(obj)
        return types.MethodType(self.fn, obj)


def warn_convergence(message):
    warnings.warn(message, ConvergenceWarning, stacklevel=3)
