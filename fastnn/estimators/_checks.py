"""Input validation for the estimators: fastnn's own, with scikit-learn's messages.

Every function here only reads its inputs and returns new values; nothing touches an
estimator, so a fit that fails validation leaves the estimator as it was.
"""
import math
import numbers
import warnings

import numpy as np

from .._validation import all_finite
from ._base import DataConversionWarning


def _is_sparse(X):
    try:
        import scipy.sparse
    except ImportError:  # pragma: no cover - scipy is a build dependency
        return False
    return scipy.sparse.issparse(X)


def get_feature_names(X):
    """Column names of a DataFrame-like X as an object array, if all are strings."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "shape") or isinstance(X, np.ndarray):
        return None
    names = np.asarray(list(columns), dtype=object)
    if names.size == 0:
        return None
    types = sorted({type(n).__qualname__ for n in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. If you "
            "want feature names to be stored and validated, you must convert them all "
            "to strings, by using X.columns = X.columns.astype(str) for example. "
            "Otherwise you can remove feature / column names from your input data, or "
            "convert them all to a non-string data type.")
    if types == ["str"]:
        return names
    return None


def _to_numpy(X):
    if _is_sparse(X):
        # Sparse input is accepted and densified: the kernels are dense.
        return X.toarray()
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        return X.to_numpy()
    return np.asarray(X)


def non_finite_error(X, name="X", estimator_name="estimator"):
    """The error for an X that holds NaN or infinity."""
    what = "NaN" if np.isnan(X).any() else "infinity or a value too large"
    return ValueError(
        f"Input {name} contains {what}. {estimator_name} does not accept missing "
        "values or infinities; impute or drop them first.")


def check_X(X, dtype, *, name="X", estimator_name="estimator", ensure_min_samples=1,
            finite=True, accept_sparse=False):
    """Validate and convert X to a C-contiguous 2-D float array of ``dtype``.

    ``dtype`` is a NumPy float dtype, or the tuple (float64, float32) meaning "keep
    float32/float64 input, convert everything else to float64". finite=False leaves NaN
    and infinity (in X, or made by the conversion) to a caller that tests for them later.
    accept_sparse=True returns a scipy.sparse X as a CSR matrix instead (see
    check_sparse_X); otherwise sparse X is densified.
    """
    if accept_sparse and _is_sparse(X):
        return check_sparse_X(X, dtype, name=name, estimator_name=estimator_name,
                              ensure_min_samples=ensure_min_samples)
    try:
        arr = _to_numpy(X)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} could not be converted to an array: {exc}") from exc
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported\n{name} has a complex dtype.")
    if arr.dtype.kind in "OSUV" and arr.dtype != object:
        raise ValueError(f"{name} must hold numbers, got an array of dtype {arr.dtype}.")
    if arr.ndim == 0:
        raise ValueError(
            f"Expected 2D array, got scalar array instead:\narray={arr!r}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a "
            "single feature or array.reshape(1, -1) if it contains a single sample.")
    if arr.ndim == 1:
        raise ValueError(
            f"Expected 2D array, got 1D array instead:\narray={arr!r}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a "
            "single feature or array.reshape(1, -1) if it contains a single sample.")
    if arr.ndim > 2:
        raise ValueError(
            f"Found array with dim {arr.ndim}, while dim <= 2 is required by "
            f"{estimator_name}: {name} must be 2-D (n_samples, n_features), got shape "
            f"{arr.shape}.")
    if isinstance(dtype, tuple):
        target = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    else:
        target = np.dtype(dtype)
    if arr.dtype == object:
        arr = arr.astype(np.float64)  # raises TypeError for dicts, ValueError for text
    _check_counts(arr.shape, ensure_min_samples, estimator_name)
    if finite and arr.dtype.kind == "f" and not all_finite(arr):
        raise non_finite_error(arr, name, estimator_name)
    with np.errstate(over="ignore"):        # an overflow is an infinity, reported below
        out = np.ascontiguousarray(arr, dtype=target)
    if finite and out.dtype != arr.dtype and out.dtype.kind == "f" and not all_finite(out):
        # e.g. a float64 value beyond float32's range
        raise ValueError(
            f"Input {name} contains infinity or a value too large for {out.dtype!r}.")
    return out


def _check_counts(shape, ensure_min_samples, estimator_name):
    """scikit-learn's check_array errors for too few samples or no features."""
    n, d = shape
    if n < ensure_min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape={shape}) while a minimum of "
            f"{ensure_min_samples} is required by {estimator_name}.")
    if d < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is "
            f"required by {estimator_name}.")


def check_sparse_X(X, dtype, *, name="X", estimator_name="estimator", ensure_min_samples=1):
    """A scipy.sparse X as a CSR matrix of ``dtype`` (same meaning as in check_X).

    As scikit-learn's check_array(accept_sparse="csr"): other formats are converted
    with ``asformat("csr")``, a CSR X keeps its stored structure (explicit zeros,
    index order), and the stored values must be finite.
    """
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}.")
    if np.iscomplexobj(X.data if hasattr(X, "data") else X.tocsr().data):
        raise ValueError(f"Complex data not supported\n{name} has a complex dtype.")
    X = X.asformat("csr")
    if isinstance(dtype, tuple):
        target = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    else:
        target = np.dtype(dtype)
    if X.dtype != target:
        X = X.astype(target)
    _check_counts(X.shape, ensure_min_samples, estimator_name)
    if not np.isfinite(X.data).all():
        what = "NaN" if np.isnan(X.data).any() else "infinity or a value too large"
        raise ValueError(
            f"Input {name} contains {what}. {estimator_name} does not accept missing "
            "values or infinities; impute or drop them first.")
    return X


def check_n_features(estimator, n_features):
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and n_features != expected:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{expected} features as input.")


def check_feature_names(estimator, X):
    """Warn or raise as scikit-learn does when predict-time names differ from fit."""
    fitted = getattr(estimator, "feature_names_in_", None)
    names = get_feature_names(X)
    name = type(estimator).__name__
    if fitted is None and names is None:
        return
    if names is not None and fitted is None:
        warnings.warn(f"X has feature names, but {name} was fitted without feature names")
        return
    if names is None:
        warnings.warn(
            f"X does not have valid feature names, but {name} was fitted with feature names")
        return
    if len(fitted) != len(names) or np.any(fitted != names):
        unexpected = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))
        message = "The feature names should match those that were passed during fit.\n"
        if unexpected:
            message += "Feature names unseen at fit time:\n" + "".join(
                f"- {n}\n" for n in unexpected[:5]) + ("- ...\n" if len(unexpected) > 5 else "")
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + "".join(
                f"- {n}\n" for n in missing[:5]) + ("- ...\n" if len(missing) > 5 else "")
        if not unexpected and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)


def validate_predict_X(estimator, X, dtype):
    """X for predict/decision_function: fitted check, names, conversion, width."""
    estimator._check_is_fitted()
    check_feature_names(estimator, X)
    X = check_X(X, dtype, estimator_name=type(estimator).__name__)
    check_n_features(estimator, X.shape[1])
    return X


def check_y(y, *, n_samples, multi_output=False, name="y"):
    """y as a NumPy array with n_samples rows; a column vector is flattened with
    a DataConversionWarning unless multi_output is allowed (then (n, 1) stays 2-D
    only if the caller asks for multi-output)."""
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    if _is_sparse(y):
        y = y.toarray()
    y = np.asarray(y)
    if np.iscomplexobj(y):
        raise ValueError(f"Complex data not supported\n{name} has a complex dtype.")
    if y.ndim == 0:
        raise ValueError(f"{name} must be 1-D, got a scalar.")
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change "
            "the shape of y to (n_samples, ), for example using ravel().",
            DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim > 2 or (y.ndim == 2 and not multi_output):
        raise ValueError(f"{name} should be a 1d array, got an array of shape {y.shape} instead.")
    if len(y) != n_samples:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{n_samples}, {len(y)}]")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        what = "NaN" if np.isnan(y).any() else "infinity"
        raise ValueError(f"Input {name} contains {what}.")
    if y.dtype == object:
        for v in y.ravel():
            if isinstance(v, float) and not np.isfinite(v):
                raise ValueError(f"Input {name} contains NaN or infinity.")
    return y


def check_regression_y(y, n_samples, dtype):
    y = check_y(y, n_samples=n_samples, multi_output=True)
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must be numeric for regression: {exc}") from exc
    out = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"Input y contains infinity or a value too large for {out.dtype!r}.")
    return out


def type_of_target(y):
    """The subset of scikit-learn's type_of_target the classifiers need:
    'binary', 'multiclass', 'multilabel-indicator', 'continuous', 'unknown',
    'multiclass-multioutput'."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if y.dtype.kind in "biuf" and np.all((y == 0) | (y == 1)):
            return "multilabel-indicator"
        if y.dtype.kind == "f" and np.any(y != np.round(y)):
            return "continuous-multioutput"
        return "multiclass-multioutput"
    if y.dtype == object:
        if len(y) and not isinstance(y.flat[0], str):
            if all(isinstance(v, numbers.Integral) for v in y):
                pass  # integers stored as objects are plain labels
            elif all(isinstance(v, numbers.Real) for v in y):
                y = y.astype(np.float64)
            else:
                return "unknown"
    if y.dtype.kind == "f" and np.any(y != np.round(y)):
        return "continuous"
    n_unique = len(np.unique(y)) if len(y) else 0
    return "multiclass" if n_unique > 2 else "binary"


def check_classification_y(y, n_samples, *, allow_multilabel=False):
    """Validate classification targets; returns (y, target_type)."""
    y = check_y(y, n_samples=n_samples, multi_output=allow_multilabel)
    kind = type_of_target(y)
    if kind in ("continuous", "continuous-multioutput", "unknown"):
        raise ValueError(
            f"Unknown label type: {kind}. Maybe you are trying to fit a classifier, "
            "which expects discrete classes, on a regression target with continuous "
            "values.")
    if kind == "multiclass-multioutput":
        raise ValueError(
            "Multioutput target data is not supported: y must be 1-D labels or a 2-D "
            "0/1 label-indicator matrix.")
    return y, kind


def unique_labels(y):
    try:
        return np.unique(y)
    except TypeError as exc:
        raise TypeError(
            "Labels must be of one comparable type (e.g. all strings or all numbers); "
            f"got mixed types: {exc}") from exc


def encode_labels(y, classes):
    """Indices of y in the sorted array classes; ValueError for unseen labels."""
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, len(classes) - 1)
    bad = classes[idx] != y
    if np.any(bad):
        unseen = np.unique(np.asarray(y)[bad])
        raise ValueError(
            f"y contains labels not seen in classes: {unseen.tolist()}; the classes are "
            f"{np.asarray(classes).tolist()}.")
    return idx.astype(np.intp)


def check_sample_weight(sample_weight, n_samples, dtype=np.float64, *, allow_all_zero=False,
                        allow_negative=False):
    """sample_weight as a 1-D float array of length n_samples (None -> ones).

    Negative weights are refused unless allow_negative (scikit-learn's Perceptron
    takes them; its MLPs' results with them are not defined)."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    if isinstance(sample_weight, numbers.Number):
        sw = np.full(n_samples, sample_weight, dtype=dtype)
    else:
        sw = np.asarray(sample_weight)
        if sw.dtype.kind not in "biuf":
            try:
                sw = sw.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"sample_weight must be numeric: {exc}") from exc
        if sw.ndim != 1:
            raise ValueError(
                f"Sample weights must be 1D array or scalar, got {sw.ndim}D array. "
                f"Expected either a scalar value or a 1D array of length {n_samples}.")
        if sw.shape != (n_samples,):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(n_samples,)}!")
        sw = np.array(sw, dtype=dtype)  # a copy: the caller's array is never written
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight contains NaN or infinity.")
    if not allow_negative and np.any(sw < 0):
        raise ValueError("sample_weight must be non-negative.")
    if not allow_all_zero and np.all(sw == 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sw


def compute_class_weight(class_weight, classes, y_idx, sample_weight=None, *,
                         allow_negative=False):
    """Per-class weights for classes (y_idx are indices into classes).

    None -> ones; "balanced" -> n_samples / (n_classes * count) over the classes
    present in y (ValueError if a class is absent, as scikit-learn); a dict
    {label: weight} -> those weights, 1 for labels not named.
    """
    n_classes = len(classes)
    if class_weight is None or (isinstance(class_weight, dict) and not class_weight):
        return np.ones(n_classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict, got {class_weight!r}.")
        w = np.ones(len(y_idx)) if sample_weight is None else np.asarray(sample_weight, float)
        counts = np.bincount(y_idx, weights=w, minlength=n_classes)
        if np.any(counts == 0):
            raise ValueError("classes should have valid labels that are in y")
        return w.sum() / (n_classes * counts)
    if not isinstance(class_weight, dict):
        raise ValueError(
            f"class_weight must be None, 'balanced' or a dict, got {type(class_weight).__name__}.")
    weights = np.ones(n_classes)
    known = set()
    for i, c in enumerate(classes):
        for key in (c, _plain(c)):
            try:
                if key in class_weight:
                    weights[i] = float(class_weight[key])
                    known.add(key)
                    break
            except TypeError:
                continue
    unknown = [k for k in class_weight if k not in known and _plain(k) not in
               {_plain(c) for c in classes}]
    if unknown:
        raise ValueError(f"class_weight names labels that are not classes: {unknown}.")
    if not np.all(np.isfinite(weights)):
        raise ValueError("class_weight values must be finite.")
    if not allow_negative and np.any(weights < 0):
        raise ValueError("class_weight values must be finite and non-negative.")
    return weights


def _plain(v):
    """A label as a plain Python value (np.int64(3) -> 3, np.str_('a') -> 'a')."""
    return v.item() if isinstance(v, np.generic) else v


# -------------------------------------------------------------- parameter constraints
# scikit-learn's _parameter_constraints, checked as its validate_parameter_constraints
# does (its InvalidParameterError is a ValueError), with its messages: "The 'alpha'
# parameter of MLPClassifier must be a float in the range [0.0, inf). Got -1 instead."

def invalid_parameter(estimator_name, name, what, value):
    return ValueError(f"The {name!r} parameter of {estimator_name} must be {what}. Got "
                      f"{value!r} instead.")


def check_real_param(value, name, estimator_name, low=None, high=None, low_open=False,
                     high_open=False, also=None):
    """A real number (bools count, as in scikit-learn's Interval(Real, ...)), not NaN,
    within [low, high] (open where asked; no upper bound means < inf)."""
    lo = "(" if low_open else "["
    hi = ")" if (high_open or high is None) else "]"
    what = (f"a float in the range {lo}{low}, {'inf' if high is None else high}{hi}"
            + (f" or {also}" if also else ""))
    if not isinstance(value, numbers.Real) or np.isnan(value):
        raise invalid_parameter(estimator_name, name, what, value)
    if (value < low or (low_open and value == low)
            or (high is None and value == np.inf)
            or (high is not None and (value > high or (high_open and value == high)))):
        raise invalid_parameter(estimator_name, name, what, value)


def check_int_param(value, name, estimator_name, low, what=None, high=None):
    """An integer (bools count, as in scikit-learn's Interval(Integral, ...)) in
    [low, high] (no upper bound when high is None)."""
    if (not isinstance(value, numbers.Integral) or value < low
            or (high is not None and value > high)):
        if what is None:
            what = f"an int in the range [{low}, {'inf)' if high is None else f'{high}]'}"
        raise invalid_parameter(estimator_name, name, what, value)


def check_bool_param(value, name, estimator_name):
    """scikit-learn's "boolean": a bool or a numpy.bool_ (not 0 or 1)."""
    if not isinstance(value, (bool, np.bool_)):
        raise invalid_parameter(estimator_name, name, "an instance of 'bool' or an instance "
                                "of 'numpy.bool'", value)


def check_verbose_param(value, estimator_name):
    """scikit-learn's "verbose": an int >= 0, a bool or a numpy.bool_."""
    if not isinstance(value, (bool, np.bool_)):
        check_int_param(value, "verbose", estimator_name, low=0,
                        what="an int in the range [0, inf), an instance of 'bool' or an "
                        "instance of 'numpy.bool'")


def check_random_state_param(value, estimator_name):
    """scikit-learn's "random_state": an int in [0, 2**32 - 1] (bools count), a
    numpy RandomState or None (a numpy Generator is refused, as there)."""
    if not (value is None or isinstance(value, np.random.RandomState) or (
            isinstance(value, numbers.Integral) and 0 <= value <= 2**32 - 1)):
        raise invalid_parameter(estimator_name, "random_state", "an int in the range [0, "
                                "4294967295], an instance of 'numpy.random.mtrand."
                                "RandomState' or None", value)


def check_str_option(value, name, estimator_name, options, also=None):
    """scikit-learn's StrOptions: a str among options (np.str_ counts)."""
    if not (isinstance(value, str) and value in options):
        listed = ", ".join(repr(o) for o in sorted(options))
        raise invalid_parameter(estimator_name, name, f"a str among {{{listed}}}"
                                + (f" or {also}" if also else ""), value)


def check_shuffle_split(n_samples, fraction):
    """Raise where scikit-learn's train_test_split(test_size=fraction) refuses the
    sizes, with its messages: a test_size that is not a positive float below 1 (0,
    0.0, False, a Fraction...), or an empty train set. Returns (n_train, n_test)."""
    kind = np.asarray(fraction).dtype.kind
    if (kind == "i" and (fraction >= n_samples or fraction <= 0)) or (
            kind == "f" and (fraction <= 0 or fraction >= 1)):
        raise ValueError(
            f"test_size={fraction} should be either positive and smaller than the number "
            f"of samples {n_samples} or a float in the (0, 1) range")
    if kind not in ("i", "f"):
        raise ValueError(f"Invalid value for test_size: {fraction}")
    n_test = int(math.ceil(fraction * n_samples)) if kind == "f" else int(fraction)
    n_train = n_samples - n_test
    if n_train == 0:
        raise ValueError(
            f"With n_samples={n_samples}, test_size={fraction} and train_size=None, the "
            "resulting train set will be empty. Adjust any of the aforementioned "
            "parameters.")
    return n_train, n_test


def check_stratified_split(labels, fraction):
    """Raise where scikit-learn's StratifiedShuffleSplit(test_size=fraction) cannot
    split ``labels``, with its messages (in its order): the sizes train_test_split
    refuses (see check_shuffle_split), a class with a single member, fewer train or test
    rows than classes. 2-D labels are taken row by row as scikit-learn does (each row
    joined into one string label)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = np.array([" ".join(row.astype("str")) for row in labels])
    n_samples = len(labels)
    n_train, n_test = check_shuffle_split(n_samples, fraction)
    classes, counts = np.unique(labels, return_counts=True)
    if np.min(counts) < 2:
        raise ValueError(
            "The least populated classes in y have only 1 member, which is too few. The "
            "minimum number of groups for any class cannot be less than 2. Classes with "
            f"too few members are: {classes[counts < 2].tolist()}")
    if n_train < len(classes):
        raise ValueError(
            f"The train_size = {n_train} should be greater or equal to the number of "
            f"classes = {len(classes)}")
    if n_test < len(classes):
        raise ValueError(
            f"The test_size = {n_test} should be greater or equal to the number of "
            f"classes = {len(classes)}")


def train_val_split(n_samples, fraction, seed, stratify=None):
    """Indices (train, val) with ceil(fraction * n) validation rows, stratified by
    the integer labels ``stratify`` when given (proportional allocation, largest
    remainders first)."""
    rng = np.random.default_rng(seed)
    n_val = int(np.ceil(fraction * n_samples))
    if n_val <= 0 or n_val >= n_samples:
        raise ValueError(
            f"Splitting {n_samples} samples into a train set and a validation set with "
            f"validation_fraction={fraction!r} led to an empty set ({n_samples - n_val} "
            f"and {n_val} samples). Please either change validation_fraction, increase "
            "number of samples, or disable early_stopping.")
    if stratify is None:
        perm = rng.permutation(n_samples)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    stratify = np.asarray(stratify)
    labels, inv = np.unique(stratify, return_inverse=True)
    counts = np.bincount(inv)
    exact = counts * n_val / n_samples
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), kind="stable")
    for k in order[: n_val - take.sum()]:
        take[k] += 1
    take = np.minimum(take, counts - (counts > 1))  # leave a class a training row if it can
    val = []
    for k in range(len(labels)):
        members = np.flatnonzero(inv == k)
        val.append(rng.permutation(members)[: take[k]])
    val = np.sort(np.concatenate(val))
    mask = np.zeros(n_samples, bool)
    mask[val] = True
    return np.flatnonzero(~mask), val
