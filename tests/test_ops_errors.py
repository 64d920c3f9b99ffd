"""Bad input to fastnn.ops (and fastnn.reference) raises a clear ValueError or TypeError
whose message names the problem."""
import numpy as np
import pytest

X23 = np.ones((2, 3))
X3D = np.ones((2, 3, 4))


def _bn_cache():
    import fastnn.reference as ref
    return ref.batchnorm_forward(np.arange(6.0).reshape(3, 2), np.ones(2), np.zeros(2), 1e-5)[1]


# (id, op name, arguments, message pattern) -- all ValueError
BAD = [
    # mismatched shapes
    ("sigmoid_backward-shapes", "sigmoid_backward", lambda: (np.ones((2, 3)), np.ones((3, 2))), r"shape"),
    ("tanh_backward-shapes", "tanh_backward", lambda: (np.ones(4), np.ones(5)), r"shape"),
    ("relu_backward-shapes", "relu_backward", lambda: (np.ones((2, 3)), np.ones((2, 3, 1))), r"shape"),
    ("linear_forward-in", "linear_forward", lambda: (np.ones((2, 3)), np.ones((4, 5)), None), r"shape"),
    ("linear_forward-bias", "linear_forward", lambda: (np.ones((2, 3)), np.ones((3, 5)), np.ones(4)),
     r"\bb\b.*shape.*\(5,\)"),
    ("linear_forward-bias-2d", "linear_forward", lambda: (np.ones((2, 3)), np.ones((3, 5)), np.ones((1, 5))),
     r"\bb\b.*shape"),
    ("linear_backward-in", "linear_backward", lambda: (np.ones((2, 3)), np.ones((4, 5)), np.ones((2, 5))),
     r"shape"),
    ("linear_backward-dy", "linear_backward", lambda: (np.ones((2, 3)), np.ones((3, 5)), np.ones((2, 4))),
     r"dy.*shape.*\(2, 5\)"),
    ("cross_entropy-n", "cross_entropy", lambda: (X23, np.array([0, 1, 2])), r"label|rows"),
    ("cross_entropy-probs-shape", "cross_entropy", lambda: (X23, np.ones((2, 4)) / 4), r"shape"),
    ("cross_entropy-probs-rows", "cross_entropy", lambda: (X23, np.ones((3, 3)) / 3), r"shape"),
    ("batchnorm_forward-gamma", "batchnorm_forward", lambda: (X23, np.ones(2), np.zeros(3), 1e-5),
     r"gamma.*shape"),
    ("batchnorm_forward-beta", "batchnorm_forward", lambda: (X23, np.ones(3), np.zeros((3, 1)), 1e-5),
     r"beta.*shape"),
    ("batchnorm_backward-dy", "batchnorm_backward", lambda: (np.ones((3, 3)), _bn_cache()), r"shape"),
    # 3-D (or 1-D) where 2-D is needed
    ("softmax-3d", "softmax", lambda: (X3D,), r"2-D"),
    ("softmax-1d", "softmax", lambda: (np.ones(3),), r"2-D"),
    ("log_softmax-3d", "log_softmax", lambda: (X3D,), r"2-D"),
    ("cross_entropy-3d", "cross_entropy", lambda: (X3D, np.zeros(2, dtype=int)), r"2-D"),
    ("cross_entropy-1d", "cross_entropy", lambda: (np.ones(3), np.zeros(3, dtype=int)), r"2-D"),
    ("cross_entropy-target-3d", "cross_entropy", lambda: (X23, np.ones((2, 3, 1))),
     r"class indices|probabilities"),
    ("linear_forward-x-3d", "linear_forward", lambda: (X3D, np.ones((4, 5)), None), r"\bx\b.*2-D"),
    ("linear_forward-w-1d", "linear_forward", lambda: (X23, np.ones(3), None), r"\bw\b.*2-D"),
    ("linear_backward-x-3d", "linear_backward", lambda: (X3D, np.ones((4, 5)), np.ones((2, 5))), r"2-D"),
    ("batchnorm_forward-3d", "batchnorm_forward", lambda: (X3D, np.ones(4), np.zeros(4), 1e-5), r"2-D"),
    ("batchnorm_forward-1d", "batchnorm_forward", lambda: (np.ones(3), np.ones(3), np.zeros(3), 1e-5), r"2-D"),
    ("one_hot-2d", "one_hot", lambda: (np.zeros((2, 1), dtype=int), 3), r"1-D"),
    # labels outside [0, k)
    ("one_hot-high", "one_hot", lambda: (np.array([0, 3]), 3), r"\[0, 3\)"),
    ("one_hot-negative", "one_hot", lambda: (np.array([-1, 0]), 3), r"\[0, 3\)"),
    ("cross_entropy-high", "cross_entropy", lambda: (X23, np.array([0, 3])), r"target.*\[0, 3\)"),
    ("cross_entropy-negative", "cross_entropy", lambda: (X23, np.array([-1, 0])), r"target.*\[0, 3\)"),
    ("one_hot-non-integer", "one_hot", lambda: (np.array([0.0, 1.5]), 3), r"integer"),
    ("cross_entropy-non-integer", "cross_entropy", lambda: (X23, np.array([0.0, 1.5])), r"integer"),
    ("one_hot-num_classes", "one_hot", lambda: (np.array([0]), 0), r"num_classes"),
    # NaN / inf in cross_entropy targets
    ("cross_entropy-nan-probs", "cross_entropy", lambda: (X23, np.array([[0.5, 0.5, 0], [np.nan, 1, 0]])),
     r"target.*NaN"),
    ("cross_entropy-inf-probs", "cross_entropy", lambda: (X23, np.array([[np.inf, 0, 0], [0, 1, 0]])),
     r"target.*(NaN|inf)"),
    ("cross_entropy-nan-label", "cross_entropy", lambda: (X23, np.array([0.0, np.nan])), r"target.*NaN"),
    # empty where a row is needed
    ("cross_entropy-empty", "cross_entropy", lambda: (np.ones((0, 3)), np.zeros(0, dtype=int)), r"row"),
    ("cross_entropy-empty-probs", "cross_entropy", lambda: (np.ones((0, 3)), np.ones((0, 3))), r"row"),
    ("cross_entropy-no-classes", "cross_entropy", lambda: (np.ones((2, 0)), np.zeros(2, dtype=int)),
     r"class"),
    ("batchnorm_forward-empty", "batchnorm_forward", lambda: (np.ones((0, 3)), np.ones(3), np.zeros(3), 1e-5),
     r"row"),
    # bad dropout probability
    ("dropout-p-negative", "dropout", lambda: (X23, -0.01, 0), r"\bp\b.*\[0, 1\)"),
    ("dropout-p-one", "dropout", lambda: (X23, 1.0, 0), r"\bp\b.*\[0, 1\)"),
    ("dropout-p-nan", "dropout", lambda: (X23, float("nan"), 0), r"\bp\b.*\[0, 1\)"),
    # bad eps
    ("batchnorm_forward-eps", "batchnorm_forward", lambda: (X23, np.ones(3), np.zeros(3), -1.0), r"eps"),
    ("batchnorm_forward-eps-nan", "batchnorm_forward", lambda: (X23, np.ones(3), np.zeros(3), float("nan")),
     r"eps"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_raises_value_error(mod, case):
    _, name, build, pattern = case
    with pytest.raises(ValueError, match=pattern):
        getattr(mod, name)(*build())


BAD_TYPES = [
    ("sigmoid-complex", "sigmoid", lambda: (np.ones(3, dtype=complex),), r"complex|real"),
    ("softmax-strings", "softmax", lambda: (np.array([["a", "b"]]),), r"numeric|real|number"),
    ("linear_forward-complex-w", "linear_forward", lambda: (X23, np.ones((3, 2), dtype=complex), None),
     r"complex|real"),
    ("dropout-seed-float", "dropout", lambda: (X23, 0.5, 1.5), r"seed"),
    ("dropout-p-object", "dropout", lambda: (X23, object(), 0), r"\bp\b"),
    ("one_hot-num_classes-float", "one_hot", lambda: (np.array([0]), 2.5), r"num_classes"),
    # an object array is read only when it holds numbers: None is not read as NaN
    ("sigmoid-object-None", "sigmoid", lambda: (np.array([1.0, None], dtype=object),),
     r"real numbers, found None"),
    ("one_hot-object-None", "one_hot", lambda: (np.array([0, None], dtype=object), 2),
     r"real numbers, found None"),
    ("linear_forward-object-str", "linear_forward",
     lambda: (X23, np.array([[1, "a"]] * 3, dtype=object), None), r"numeric"),
]


def test_object_arrays_of_numbers_are_read_as_float64():
    from decimal import Decimal
    from fractions import Fraction

    from fastnn import ops, reference
    x = np.array([[1, 2.5], [Fraction(1, 2), np.float32(-3)], [np.True_, Decimal("0.25")],
                  ["1.5", np.int8(2)]], dtype=object)
    for name in ("sigmoid", "softmax", "relu"):
        expected = getattr(reference, name)(x.astype(np.float64))
        for mod in (ops, reference):
            out = getattr(mod, name)(x)
            assert out.dtype == np.float64
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    labels = np.array([0, 2, True], dtype=object)
    for mod in (ops, reference):
        np.testing.assert_array_equal(mod.one_hot(labels, 3), np.eye(3)[[0, 2, 1]])


@pytest.mark.parametrize("case", BAD_TYPES, ids=[c[0] for c in BAD_TYPES])
def test_wrong_kind_of_input_raises_type_error(mod, case):
    _, name, build, pattern = case
    with pytest.raises(TypeError, match=pattern):
        getattr(mod, name)(*build())


GOOD_EDGE_CASES = [
    # allowed: empty batches where nothing needs a row
    ("softmax", lambda: (np.ones((0, 3)),), (0, 3)),
    ("softmax", lambda: (np.ones((2, 0)),), (2, 0)),
    ("log_softmax", lambda: (np.ones((2, 0)),), (2, 0)),
    ("log_softmax", lambda: (np.ones((0, 3)),), (0, 3)),
    ("one_hot", lambda: (np.zeros(0, dtype=int), 4), (0, 4)),
    ("sigmoid", lambda: (np.ones((0, 3)),), (0, 3)),
    ("linear_forward", lambda: (np.ones((0, 3)), np.ones((3, 2)), np.ones(2)), (0, 2)),
    ("dropout", lambda: (np.ones((0, 3)), 0.5, 1), (0, 3)),
    # integer-valued floats are fine as labels
    ("one_hot", lambda: (np.array([2.0, 0.0]), 3), (2, 3)),
    ("cross_entropy", lambda: (X23, np.array([2.0, 0.0])), None),
]


@pytest.mark.parametrize("name,build,shape", GOOD_EDGE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GOOD_EDGE_CASES)])
def test_edge_cases_that_are_allowed(mod, name, build, shape):
    out = getattr(mod, name)(*build())
    first = out[0] if isinstance(out, tuple) else out
    if shape is not None:
        assert first.shape == shape


@pytest.mark.parametrize("bad", ["0.5", True, None])
def test_dropout_p_must_be_a_number(mod, bad):
    with pytest.raises(TypeError, match="dropout probability p must be a real number"):
        mod.dropout(np.ones(3), bad, 1)


@pytest.mark.parametrize("bad", ["1e-5", True])
def test_batchnorm_eps_must_be_a_number(mod, bad):
    with pytest.raises(TypeError, match="eps"):
        mod.batchnorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3), bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("large", [False, True], ids=["exact-test", "sum-first"])
@pytest.mark.parametrize("threads", [1, 3])
def test_all_finite(dtype, large, threads):
    import fastnn
    from fastnn._validation import SUM_CHECK_SIZE, all_finite
    rows = SUM_CHECK_SIZE // 7 + 1 if large else 5     # either side of the switch
    big = np.finfo(dtype).max
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)      # the sum is split in as many slices
    try:
        assert all_finite(np.zeros((0, 3), dtype))
        assert all_finite(np.ones((rows, 7), dtype))
        # finite values whose sum overflows: the exact test decides
        assert all_finite(np.full((rows, 7), big, dtype))
        for bad in (np.nan, np.inf, -np.inf):
            for row, col in [(3, 2), (rows - 1, 6)]:        # first and last slice
                a = np.ones((rows, 7), dtype)
                a[row, col] = bad
                assert not all_finite(a)
                assert not all_finite(a[:, ::2].T)       # strided
        a = np.ones(rows * 7, dtype)
        a[1], a[-1] = np.inf, -np.inf                # they cancel to NaN in the sum
        assert not all_finite(a)
    finally:
        fastnn.set_num_threads(before)
