"""Input checks and conversions shared by fastnn.ops and fastnn.reference.

Everything is checked before anything is written, so a failed call changes nothing.
"""
import argparse
import math
import numbers
import operator
import threading

import numpy as np

from fastnn._config import get_num_threads


def as_numeric(a, name):
    """a as an ndarray of real numbers (bool, int or float), or a TypeError naming it.

    Other arrays are converted to float64 where NumPy can (numeric strings, object
    arrays of numbers); an object array holding None is rejected rather than read as NaN."""
    arr = np.asarray(a)
    if arr.dtype.kind in "biuf":
        return arr
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind == "O" and any(v is None for v in arr.flat):
        raise TypeError(f"{name} must hold real numbers, found None")
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}") from None


def common_float_dtype(*arrays):
    """float64 if any operand is float64 (or wider) or none is float; else float32."""
    kinds = [a.dtype for a in arrays if a is not None and a.dtype.kind == "f"]
    if not kinds or any(dt.itemsize >= 8 for dt in kinds):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def floats(**named):
    """Convert every named operand to one C-contiguous float dtype (None stays None).

    Returns the arrays in the order given. Read-only inputs are not copied
    unless their dtype or layout has to change.
    """
    arrays = {k: (None if v is None else as_numeric(v, k)) for k, v in named.items()}
    dtype = common_float_dtype(*arrays.values())
    # order="C" rather than ascontiguousarray, which would turn a 0-d array into 1-d
    return [None if a is None else np.asarray(a, dtype=dtype, order="C") for a in arrays.values()]


def check_ndim(a, ndim, name):
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got {a.ndim}-D with shape {a.shape}")


def check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, "
                         f"got {a.shape} and {b.shape}")


#: from this many elements all_finite sums instead of testing each element
SUM_CHECK_SIZE = 1 << 20
#: the smallest slice worth a thread of its own in that sum (a fraction of a millisecond)
SUM_SLICE_SIZE = 1 << 18


def all_finite(a):
    """Whether every element of a float array is finite.

    Up to about a million elements the exact test is fastest (2.8 against 5.5 us for one
    row of 784, 38 against 71 us for 256 rows). On a large array its boolean temporary
    no longer stays in cache: there a NaN or an infinity makes the sum non-finite, so
    one summing pass, spread over the threads, settles the usual case (on one thread 26
    against 33 ms on 60k x 784), and the exact test runs only when the sum is not
    finite, which finite values can also give by overflowing."""
    if a.size < SUM_CHECK_SIZE:
        return bool(np.isfinite(a).all())
    if np.isfinite(_split_sum(a)):
        return True
    return bool(np.isfinite(a).all())


def _split_sum(a):
    """The sum of a, as the sum of the sums of slices along its first axis, one per
    thread (fastnn.set_num_threads): NumPy releases the GIL in each, and one core does
    not take all the memory bandwidth (all_finite on 60k x 784 float32: 13.5-14.0 against
    23.3-26.3 ms, 2 threads against 1). Threads are started per call: a few tens of
    microseconds against milliseconds of summing, and nothing to go stale across fork()."""
    n_parts = max(1, min(get_num_threads(), a.shape[0], a.size // SUM_SLICE_SIZE))
    bounds = np.linspace(0, a.shape[0], n_parts + 1).astype(np.intp)
    sums = [None] * n_parts

    def add_part(i):
        with np.errstate(over="ignore", invalid="ignore"):   # per thread in NumPy 2
            sums[i] = np.add.reduce(a[bounds[i]:bounds[i + 1]], axis=None)

    helpers = [threading.Thread(target=add_part, args=(i,)) for i in range(1, n_parts)]
    for helper in helpers:
        helper.start()
    add_part(0)
    for helper in helpers:
        helper.join()
    with np.errstate(over="ignore", invalid="ignore"):
        # a part that failed to sum leaves None: the exact test then decides
        return sum(sums) if all(part is not None for part in sums) else np.nan


def check_finite(a, name):
    if a.dtype.kind == "f" and not all_finite(a):
        raise ValueError(f"{name} contains NaN or infinity")


def class_labels(labels, num_classes, name="labels"):
    """1-D integer class indices in [0, num_classes) as a C-contiguous int64 array."""
    arr = as_numeric(labels, name)
    check_ndim(arr, 1, name)
    if arr.dtype.kind == "f":
        check_finite(arr, name)
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} must lie in [0, {num_classes}), found {bad!r}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def positive_count(value, name):
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")
    return n


def dropout_probability(p):
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"dropout probability p must be a real number, got {p!r}")
    p = float(p)
    if math.isnan(p) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p must lie in [0, 1), got {p}")
    return p


def dropout_seed(seed):
    """Any integer seed, taken modulo 2**64; None draws a fresh one."""
    if seed is None:
        return int(np.random.default_rng().integers(0, 2**64, dtype=np.uint64))
    try:
        return operator.index(seed) % 2**64
    except TypeError:
        raise TypeError(f"seed must be an integer or None, got {type(seed).__name__}") from None


def batchnorm_eps(eps):
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    return eps


def batchnorm_momentum(momentum):
    """BatchNorm1d's momentum: a real number in [0, 1] (checked when the layer is made,
    and again where a value set later is used)."""
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be a real number, got {momentum!r}")
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
    return momentum


def int_in_range(low, high=None):
    """An argparse type: an integer in [low, high] (no upper bound when high is None)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" + (f" and at most {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse
