"""fastnn.reference, the oracle, checked against an independent implementation:
PyTorch's functional ops and autograd, in float64 (skipped without torch)."""
import numpy as np
import pytest

import fastnn.reference as ref
from conftest import assert_close, labels, normal, probabilities

torch = pytest.importorskip("torch")
F = torch.nn.functional

F64 = np.float64


def T(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def grad_of(out, inputs, g):
    """d sum(g * out) / d inputs, by autograd."""
    return torch.autograd.grad(out, inputs, grad_outputs=T(g))


@pytest.mark.parametrize("name,tfn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                      ("relu", torch.relu)])
def test_activations_and_gradients(name, tfn):
    x = normal((6, 9), F64, "tr", name, scale=5.0)
    g = normal((6, 9), F64, "tr-g", name)
    tx = T(x, grad=True)
    ty = tfn(tx)
    assert_close(getattr(ref, name)(x), ty.detach().numpy())
    (tdx,) = grad_of(ty, [tx], g)
    back = getattr(ref, f"{name}_backward")
    dx = back(x, g) if name == "relu" else back(getattr(ref, name)(x), g)
    assert_close(dx, tdx.numpy(), scale=np.abs(g).max())


def test_softmax_and_log_softmax():
    z = normal((7, 5), F64, "tsm", scale=10.0)
    assert_close(ref.softmax(z), torch.softmax(T(z), dim=1).numpy())
    assert_close(ref.log_softmax(z), torch.log_softmax(T(z), dim=1).numpy(),
                 scale=2 * np.abs(z).max())


@pytest.mark.parametrize("target", ["index", "probabilities"])
def test_cross_entropy(target):
    n, k = 6, 4
    z = normal((n, k), F64, "tce", target, scale=3.0)
    t = labels(n, k, "tce-y") if target == "index" else probabilities((n, k), F64, "tce-t")
    tz = T(z, grad=True)
    tt = torch.tensor(t) if target == "index" else T(t)
    tloss = F.cross_entropy(tz, tt)
    (tdz,) = torch.autograd.grad(tloss, [tz])
    loss, dz = ref.cross_entropy(z, t)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    assert_close(dz, tdz.numpy(), scale=1.0 / n)


def test_one_hot():
    y = labels(9, 4, "toh")
    np.testing.assert_array_equal(ref.one_hot(y, 4), F.one_hot(torch.tensor(y), 4).numpy())


@pytest.mark.parametrize("bias", [True, False])
def test_linear_and_gradients(bias):
    x = normal((5, 3), F64, "tl-x")
    w = normal((3, 4), F64, "tl-w")
    b = normal((4,), F64, "tl-b") if bias else None
    g = normal((5, 4), F64, "tl-g")
    tx, tw = T(x, True), T(w, True)
    # torch's weight is (out, in): the transpose of ours
    ty = F.linear(tx, tw.T, None if b is None else T(b))
    assert_close(ref.linear_forward(x, w, b), ty.detach().numpy(), scale=10.0)
    tdx, tdw = grad_of(ty, [tx, tw], g)
    dx, dw, db = ref.linear_backward(x, w, g)
    assert_close(dx, tdx.numpy(), scale=10.0)
    assert_close(dw, tdw.numpy(), scale=10.0)
    assert_close(db, g.sum(axis=0), scale=10.0)


@pytest.mark.parametrize("n", [2, 8])
def test_batchnorm_training_mode_and_gradients(n):
    d, eps = 3, 1e-5
    x = normal((n, d), F64, "tbn-x", n, scale=2.0, shift=1.0)
    gamma = normal((d,), F64, "tbn-gamma", n, shift=1.0)
    beta = normal((d,), F64, "tbn-beta", n)
    g = normal((n, d), F64, "tbn-g", n)
    tx, tgamma, tbeta = T(x, True), T(gamma, True), T(beta, True)
    running_mean, running_var = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    ty = F.batch_norm(tx, running_mean, running_var, tgamma, tbeta, training=True, momentum=1.0, eps=eps)
    y, (x_hat, mean, var, inv_std, cached_gamma) = ref.batchnorm_forward(x, gamma, beta, eps)
    assert_close(y, ty.detach().numpy(), scale=10.0)
    assert_close(mean, running_mean.numpy(), scale=10.0)
    # torch's running_var (momentum 1) is the UNBIASED batch variance: var * n / (n - 1)
    assert_close(var * n / (n - 1), running_var.numpy(), scale=10.0)
    np.testing.assert_array_equal(cached_gamma, gamma)
    tdx, tdgamma, tdbeta = grad_of(ty, [tx, tgamma, tbeta], g)
    dx, dgamma, dbeta = ref.batchnorm_backward(g, (x_hat, mean, var, inv_std, cached_gamma))
    assert_close(dx, tdx.numpy(), scale=10.0 * inv_std.max())
    assert_close(dgamma, tdgamma.numpy(), scale=10.0)
    assert_close(dbeta, tdbeta.numpy(), scale=10.0)


def test_dropout_is_inverted_dropout_in_expectation():
    # E[y] = x: averaged over many seeds, each unit's mean output approaches x.
    x = np.array([1.0, -2.0, 3.0])
    ys = np.stack([ref.dropout(x, 0.25, s)[0] for s in range(4000)])
    # per unit: mean of 4000 draws of x * Bernoulli(0.75) / 0.75, std |x| sqrt(p/(1-p)/4000)
    assert np.all(np.abs(ys.mean(axis=0) - x) <= 4 * np.abs(x) * np.sqrt(0.25 / 0.75 / 4000))


def test_splitmix64_matches_integer_arithmetic():
    """The vectorised uint64 version equals SplitMix64 written with Python ints."""
    def splitmix64(seed, i):
        m = 2 ** 64 - 1
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    for seed in [0, 1, 12345, 2 ** 63 + 7, 2 ** 64 - 1]:
        idx = np.array([0, 1, 2, 1000, 2 ** 40 + 3], dtype=np.uint64)
        got = ref._splitmix64(seed, idx)
        assert [int(v) for v in got] == [splitmix64(seed, int(i)) for i in idx]


@pytest.mark.parametrize("name, args", [
    ("sigmoid", (0.5,)), ("tanh", (0.5,)), ("relu", (0.5,)),
    ("sigmoid_backward", (0.5, 2.0)), ("tanh_backward", (0.5, 2.0)),
    ("relu_backward", (0.5, 2.0)), ("mse_loss", (0.5, 2.0)),
    ("binary_cross_entropy_with_logits", (0.5, 1.0)), ("dropout", (0.5, 0.5, 3)),
])
def test_zero_d_input_gives_zero_d_arrays_as_ops(name, args):
    from fastnn import ops
    n_arrays = 1 if name == "dropout" else len(args)     # dropout's p and seed are scalars
    arrays = [np.array(a) for a in args[:n_arrays]] + list(args[n_arrays:])
    for mod in (ref, ops):
        out = getattr(mod, name)(*arrays)
        for part in (out if isinstance(out, tuple) else (out,)):
            if type(part) is not float:                  # the losses' values are floats
                assert isinstance(part, np.ndarray) and part.ndim == 0, (mod.__name__, part)
    a, b = getattr(ref, name)(*arrays), getattr(ops, name)(*arrays)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        np.testing.assert_allclose(x, y, rtol=1e-12)
