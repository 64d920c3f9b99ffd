"""The float32 Adam step's hint (csrc/fastnn_adam.h): elements with tiny or subnormal
values are updated apart from the vector loop, in double arithmetic rounded as float's,
and must come out bit for bit as the plain loop and NumPy's float32 arithmetic give."""
import pickle

import numpy as np
import pytest

from fastnn import nn, optim
from fastnn._kernels import optimizers as K

TINY = np.float32(1e-27)
TINY_GRAD = np.float32(1e-15)
SCAN_EVERY = 16


def mixed(rng, n, positive=False):
    """float32 values of every kind: zeros of both signs, subnormals, tiny and ordinary
    normals, and a few large ones."""
    kind = rng.integers(0, 6, n)
    out = rng.standard_normal(n).astype(np.float32) * np.float32(0.05)
    bits = rng.integers(1, 1 << 23, n).astype(np.uint32)
    sub = bits.view(np.float32)                                    # subnormal
    exp = rng.integers(1, 50, n).astype(np.uint32)                 # 2^-126 .. 2^-77
    tiny = ((exp << 23) | (bits & 0x7FFFFF)).view(np.float32)
    out[kind == 0] = 0.0
    out[kind == 1] = sub[kind == 1]
    out[kind == 2] = tiny[kind == 2]
    out[kind == 3] *= np.float32(1e4)
    sign = np.where(rng.random(n) < 0.5, np.float32(-1), np.float32(1))
    out = out * sign if not positive else np.abs(out)
    return out.astype(np.float32)


def numpy_adam(p, g, m, v, lr, beta1, beta2, eps, wd, decoupled, step):
    """The kernel's update in NumPy float32 arithmetic, operation by operation."""
    f = np.float32
    c2 = np.sqrt(1 - beta2 ** step)
    step_size, epsilon = f(lr / (1 - beta1 ** step) * c2), f(eps * c2)
    decay = f(1 - lr * wd) if decoupled else f(1)
    if not decoupled and wd != 0:
        g = g + f(wd) * p
    m[...] = m + f(1 - beta1) * (g - m)
    v[...] = f(beta2) * v + f(1 - beta2) * g * g
    if not decoupled and wd != 0:
        p[...] = p - step_size * (m / (np.sqrt(v) + epsilon))
    else:
        p[...] = p * decay - step_size * (m / (np.sqrt(v) + epsilon))


def same_bits(a, b):
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("n, threads", [(3000, 1), (70001, 2), (1024 * 9, 2)])
@pytest.mark.parametrize("wd, decoupled", [(0.0, False), (0.01, False), (0.01, True)])
def test_hint_changes_no_bit(n, threads, wd, decoupled):
    rng = np.random.default_rng(n + int(wd * 100) + decoupled)
    p, m, v = mixed(rng, n), mixed(rng, n), mixed(rng, n, positive=True)
    states = {"plain": [a.copy() for a in (p, m, v)], "hinted": [a.copy() for a in (p, m, v)],
              "numpy": [a.copy() for a in (p, m, v)]}
    hint = np.zeros(K.adam_hint_size(n), np.uint8)
    dead = rng.random(n) < 0.05
    for step in range(1, 3 * SCAN_EVERY + 3):
        g = mixed(rng, n)
        g[dead] = 0.0
        if step % 7 == 0:                     # a stale hint changes nothing either
            hint[rng.integers(0, hint.size, 50)] ^= 1
        for name, (ps, ms, vs) in states.items():
            if name == "numpy":
                with np.errstate(all="ignore"):
                    numpy_adam(ps, g, ms, vs, 1e-3, 0.9, 0.999, 1e-8, wd, decoupled, step)
            else:
                K.adam_step(ps, g, ms, vs, 1e-3, 0.9, 0.999, 1e-8, wd, decoupled, step,
                            threads, hint if name == "hinted" else None)
        for a, b, c in zip(*states.values()):
            assert same_bits(a, b), f"step {step}: the hint changed a result"
            assert same_bits(a, c), f"step {step}: the kernel differs from NumPy float32"
    assert hint[:n].any()


def test_scan_flags_the_tiny_values():
    n = 5000
    rng = np.random.default_rng(3)
    p, m, v, g = mixed(rng, n), mixed(rng, n), mixed(rng, n, positive=True), mixed(rng, n)
    hint = np.zeros(K.adam_hint_size(n), np.uint8)
    K.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1, 1, hint)   # a scan step

    def tiny(x, limit):
        return (x != 0) & (np.abs(x) < limit)

    expected = tiny(p, TINY) | tiny(g, TINY_GRAD) | tiny(m, TINY) | tiny(v, TINY)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(hint[:n], expected)
    blocks = -(-n // 1024)
    np.testing.assert_array_equal(
        hint[n:], [expected[i * 1024:(i + 1) * 1024].any() for i in range(blocks)])
    # between scans the flags stay as they are
    before = hint.copy()
    K.adam_step(p, np.zeros(n, np.float32), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 2, 1,
                hint)
    np.testing.assert_array_equal(hint, before)


def test_hint_is_checked():
    p = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="hint has 9 bytes, expected 11"):
        K.adam_step(p, p.copy(), p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1,
                    1, np.zeros(9, np.uint8))
    d = np.zeros(10)
    with pytest.raises(ValueError, match="float32"):
        K.adam_step(d, d.copy(), d.copy(), d.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1,
                    1, np.zeros(11, np.uint8))


def dead_unit_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 8)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


@pytest.mark.parametrize("compiled", [True, False])
def test_training_keeps_a_hint_and_does_not_pickle_it(compiled):
    X, y = dead_unit_data()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2), seed=0)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    model.fit(X, y, optimizer=opt, epochs=2, batch_size=64, verbose=0, compiled=compiled)
    hint = opt._hints[0]
    assert hint.dtype == np.uint8 and hint.size == K.adam_hint_size(model._flat_params.size)
    assert "_hints" not in pickle.loads(pickle.dumps(opt)).__dict__


def test_float64_has_no_hint():
    model = nn.Sequential(nn.Linear(8, 2), seed=0, dtype="float64")
    opt = optim.Adam(model.parameters())
    X, y = dead_unit_data()
    model.fit(X.astype(np.float64), y, optimizer=opt, epochs=1, verbose=0)
    assert not opt.__dict__.get("_hints")
