"""Shared test fixtures: dtypes, tolerances set by the arithmetic, seeded data builders
and the four memory layouts every kernel must accept."""
import importlib

import numpy as np
import pytest

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]

# Relative tolerance per dtype.  Both implementations round every operation (error
# <= eps/2 each), and sums of K terms carry up to ~K*eps (pairwise: ~log2(K)*eps) of
# error relative to the sum of the terms' magnitudes.  The sizes tested keep that
# below ~100 eps: eps(float64) = 2.2e-16 -> 1e-12 (~4500 eps: also covers a BLAS
# that blocks a dot product differently); eps(float32) = 1.2e-7 -> 1e-5 (~84 eps).
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

LAYOUTS = ["C", "F", "strided", "readonly"]


def rtol_for(dtype):
    return RTOL[np.dtype(dtype)]


@pytest.fixture(params=DTYPES, ids=lambda d: d.name)
def dtype(request):
    return request.param


@pytest.fixture(params=LAYOUTS)
def layout(request):
    return request.param


@pytest.fixture(scope="session")
def ref():
    return importlib.import_module("fastnn.reference")


@pytest.fixture(scope="session")
def ops():
    # A plain import, not importorskip: a broken build must fail the tests, not skip them.
    return importlib.import_module("fastnn.ops")


@pytest.fixture(params=["ops", "reference"])
def mod(request):
    """Each implementation in turn, for properties both must have."""
    return importlib.import_module(f"fastnn.{request.param}")


@pytest.fixture
def restore_threads():
    fastnn_config = importlib.import_module("fastnn._config")
    before = fastnn_config.get_num_threads()
    yield fastnn_config
    fastnn_config.set_num_threads(before)


# ------------------------------------------------------------------------- layouts

def as_layout(a, layout):
    """An array equal to `a` in the given memory layout:
    "C" C-contiguous, "F" Fortran-contiguous, "strided" a non-contiguous view into a
    larger buffer, "readonly" a C-contiguous array whose writeable flag is off."""
    a = np.asarray(a)
    if layout == "C":
        return np.asarray(a, order="C")        # (np.ascontiguousarray would make 0-d 1-d)
    if layout == "F":
        f = np.asarray(a, order="F")
        assert f.ndim < 2 or f.size <= 1 or min(f.shape) == 1 or not f.flags.c_contiguous
        return f
    if layout == "strided":
        if a.ndim == 0:
            return a.copy()
        # Every axis is stepped by 2 inside a buffer twice as large, so no axis is
        # contiguous; the gaps hold junk that a kernel reading past a stride would see.
        big = np.full(tuple(2 * s for s in a.shape), np.nan if a.dtype.kind == "f" else 99,
                      dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        assert a.size <= 1 or not view.flags.c_contiguous and not view.flags.f_contiguous
        return view
    if layout == "readonly":
        r = np.array(a, order="C", copy=True)
        r.flags.writeable = False
        return r
    raise ValueError(layout)


def all_layouts(a):
    return {name: as_layout(a, name) for name in LAYOUTS}


# -------------------------------------------------------------------- data builders

def rng_for(*key):
    """A generator seeded from a readable key, e.g. rng_for("softmax", 7): the same key
    gives the same data in every process (str hashes are salted, so encode the repr)."""
    data = repr(key).encode()
    return np.random.default_rng(
        [int.from_bytes(data[i:i + 4].ljust(4, b"\0"), "little") for i in range(0, len(data), 4)])


def _check_not_degenerate(a):
    assert np.all(np.isfinite(a)), "test data must be finite"
    if a.size > 1:
        assert np.ptp(a) > 0, "test data must not be constant"
    return a


def normal(shape, dtype, *key, scale=1.0, shift=0.0):
    """Seeded N(shift, scale^2) data of a dtype."""
    a = (np.asarray(rng_for(*key).standard_normal(shape)) * scale + shift).astype(dtype)
    return _check_not_degenerate(a)


def uniform(shape, dtype, *key, low=0.0, high=1.0):
    a = np.asarray(rng_for(*key).uniform(low, high, shape)).astype(dtype)
    return _check_not_degenerate(a)


def away_from_zero(shape, dtype, *key, gap=0.1, scale=2.0):
    """Normal data with every |value| >= gap, e.g. to keep ReLU off its kink."""
    a = np.asarray(rng_for(*key).standard_normal(shape)) * scale
    a = np.where(a >= 0, a + gap, a - gap).astype(dtype)
    return _check_not_degenerate(a)


def labels(n, k, *key):
    lab = rng_for(*key).integers(0, k, n)
    if n > k:
        assert len(np.unique(lab)) > 1, "labels must not all be one class"
    return lab


def probabilities(shape, dtype, *key):
    """Rows of positive weights summing to 1."""
    t = rng_for(*key).uniform(0.05, 1.0, shape)
    return (t / t.sum(axis=1, keepdims=True)).astype(dtype)


# ----------------------------------------------------------------------- comparison

def assert_close(actual, expected, *, scale=None, rtol=None):
    """actual equals expected in shape and dtype, and in value up to rounding.

    |actual - expected| <= rtol * (|expected| + scale), elementwise, where rtol comes
    from the dtype and `scale` is the magnitude of the terms that were summed or
    cancelled to get each value (scalar or array; default: the largest |expected|),
    because rounding errors are relative to the terms, not to their result.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    if rtol is None:
        rtol = rtol_for(expected.dtype)
    e = expected.astype(np.float64)
    a = actual.astype(np.float64)
    if scale is None:
        scale = np.max(np.abs(e[np.isfinite(e)]), initial=0.0)
    bound = rtol * (np.abs(e) + np.asarray(scale, dtype=np.float64))
    same_nonfinite = (~np.isfinite(e)) & ((a == e) | (np.isnan(a) & np.isnan(e)))
    bad = ~(same_nonfinite | (np.abs(a - e) <= bound))
    if np.any(bad):
        idx = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} values differ beyond rtol={rtol:g}; first at "
            f"{idx}: actual {a[idx]!r}, expected {e[idx]!r}, allowed "
            f"{np.broadcast_to(bound, bad.shape)[idx]:.3g}, max |diff| "
            f"{np.max(np.abs(a - e)[np.isfinite(e)], initial=0):.3g}")


def assert_close_float(actual, expected, *, dtype, scale):
    """For Python-float results (a loss) computed in `dtype`."""
    assert isinstance(actual, float), f"expected a Python float, got {type(actual).__name__}"
    rtol = rtol_for(dtype)
    assert abs(actual - expected) <= rtol * (abs(expected) + scale), \
        f"{actual!r} != {expected!r} (rtol {rtol:g}, scale {scale:.3g})"
