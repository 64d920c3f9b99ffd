"""fastnn.nn against PyTorch in float64: the same network with the same weights gives the same
outputs, loss, gradients, optimizer steps and batch-norm statistics, up to rounding.

Tolerances: every quantity here is a short chain of float64 operations done in a different
order by the two libraries (GEMM blocking, sums, fused vs separate steps); each order differs
by a few ulps per operation, so results agree to ~1e-13 relative to the magnitudes involved.
We allow 1e-10 (forward/backward) and 1e-8 after several optimizer steps, where the division
by sqrt(v) + eps in Adam amplifies differences in tiny second moments.
"""
import numpy as np
import pytest

from fastnn import nn
from fastnn.optim import SGD, Adam, AdamW

from conftest import labels, normal, rng_for

torch = pytest.importorskip("torch")

F64 = np.float64


def _close(actual, expected, rtol, what="", scale=0.0):
    """max |actual - expected| <= rtol * max(|expected|, scale): `scale` is the size of the
    terms a value was computed from, for values that cancel to ~0 (the bias of a Linear
    layer followed by batch norm has an exactly-zero gradient in exact arithmetic)."""
    actual = np.asarray(actual, dtype=F64)
    expected = np.asarray(expected, dtype=F64)
    assert actual.shape == expected.shape, what
    scale = max(np.max(np.abs(expected), initial=0.0), scale, 1e-300)
    err = np.max(np.abs(actual - expected), initial=0.0) / scale
    assert err <= rtol, f"{what}: max relative difference {err:.3g} > {rtol:g}"


def build_pair(seed=0, widths=(6, 9, 8, 7, 5), activations=("relu", "tanh", "sigmoid"),
               batchnorm=True):
    """The same MLP in fastnn (float64) and torch (double), weights copied from fastnn."""
    acts = {"relu": (nn.ReLU, torch.nn.ReLU), "tanh": (nn.Tanh, torch.nn.Tanh),
            "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid)}
    ours, theirs = [], []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        ours.append(nn.Linear(a, b))
        theirs.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            if batchnorm and i == 0:
                ours.append(nn.BatchNorm1d(b))
                theirs.append(torch.nn.BatchNorm1d(b))
            name = activations[i % len(activations)]
            ours.append(acts[name][0]())
            theirs.append(acts[name][1]())
    model = nn.Sequential(*ours, dtype="float64", seed=seed)
    tmodel = torch.nn.Sequential(*theirs).double()
    copy_weights(model, tmodel)
    return model, tmodel


def copy_weights(model, tmodel):
    with torch.no_grad():
        for layer, tlayer in zip(model, tmodel):
            if isinstance(layer, nn.Linear):
                tlayer.weight.copy_(torch.from_numpy(layer.weight.data.T.copy()))
                tlayer.bias.copy_(torch.from_numpy(layer.bias.data.copy()))
            elif isinstance(layer, nn.BatchNorm1d):
                # non-trivial gamma/beta, so their gradients are tested too
                d = layer.num_features
                layer.weight.data[...] = 1 + 0.3 * np.arange(d) / d
                layer.bias.data[...] = np.linspace(-0.2, 0.2, layer.num_features)
                tlayer.weight.copy_(torch.from_numpy(layer.weight.data.copy()))
                tlayer.bias.copy_(torch.from_numpy(layer.bias.data.copy()))


def torch_param_grads(model, tmodel):
    """[(our Parameter, torch grad as (our layout) ndarray)] for every parameter."""
    pairs = []
    for layer, tlayer in zip(model, tmodel):
        if isinstance(layer, nn.Linear):
            pairs.append((layer.weight, tlayer.weight.grad.numpy().T))
            pairs.append((layer.bias, tlayer.bias.grad.numpy()))
        elif isinstance(layer, nn.BatchNorm1d):
            pairs.append((layer.weight, tlayer.weight.grad.numpy()))
            pairs.append((layer.bias, tlayer.bias.grad.numpy()))
    return pairs


@pytest.mark.parametrize("acts", [("relu", "tanh", "sigmoid"), ("sigmoid", "relu", "tanh"),
                                  ("tanh", "sigmoid", "relu")])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_network_forward_backward_matches_torch(acts, targets):
    model, tmodel = build_pair(1, activations=acts)
    X = normal((13, 6), F64, "torch-net", acts)
    y = labels(13, 5, "torch-net-y", acts)
    if targets == "probabilities":
        t = rng_for("torch-probs", acts).uniform(0.1, 1.0, (13, 5))
        y = t / t.sum(axis=1, keepdims=True)
    loss_fn = nn.CrossEntropyLoss()

    out = model.forward(X)
    loss = loss_fn(out, y)
    dx = model.backward(loss_fn.backward())

    tx = torch.tensor(X, requires_grad=True)
    tout = tmodel(tx)
    tloss = torch.nn.functional.cross_entropy(
        tout, torch.from_numpy(y) if targets == "probabilities" else torch.from_numpy(y).long())
    tloss.backward()

    _close(out, tout.detach().numpy(), 1e-10, "outputs")
    assert isinstance(loss, float)
    assert abs(loss - tloss.item()) <= 1e-10 * abs(tloss.item())
    _close(dx, tx.grad.numpy(), 1e-10, "input gradient")
    pairs = torch_param_grads(model, tmodel)
    assert len(pairs) == len(model.parameters())
    for i, (p, g) in enumerate(pairs):
        layer_scale = np.max(np.abs(pairs[i - i % 2][1]))     # the layer's weight gradient
        _close(p.grad, g, 1e-10, f"gradient of {p.name}", scale=layer_scale)


def test_batchnorm_running_stats_and_eval_match_torch():
    model, tmodel = build_pair(2)
    tmodel.train()
    for step in range(4):
        X = normal((11 + step, 6), F64, "bn-stats", step, scale=2.0, shift=0.5)
        model.forward(X)
        tmodel(torch.from_numpy(X))
    bn, tbn = model[1], tmodel[1]
    _close(bn.running_mean, tbn.running_mean.numpy(), 1e-12, "running_mean")
    _close(bn.running_var, tbn.running_var.numpy(), 1e-12, "running_var")
    X = normal((9, 6), F64, "bn-eval")
    tmodel.eval()
    expected = tmodel(torch.from_numpy(X)).detach().numpy()
    _close(model.predict(X), expected, 1e-10, "eval outputs (predict)")
    model.eval()
    _close(model.forward(X), expected, 1e-10, "eval outputs (forward)")


def test_batchnorm_eval_mode_gradients_match_torch():
    model, tmodel = build_pair(3)
    for step in range(2):
        X = normal((10, 6), F64, "bn-eval-grad", step, scale=1.5)
        model.forward(X)
        tmodel(torch.from_numpy(X))
    model.eval()
    tmodel.eval()
    X = normal((7, 6), F64, "bn-eval-grad-x")
    y = labels(7, 5, "bn-eval-grad-y")
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model.forward(X), y)
    dx = model.backward(loss_fn.backward())
    tx = torch.tensor(X, requires_grad=True)
    torch.nn.functional.cross_entropy(tmodel(tx), torch.from_numpy(y)).backward()
    _close(dx, tx.grad.numpy(), 1e-10, "input gradient")
    pairs = torch_param_grads(model, tmodel)
    for i, (p, g) in enumerate(pairs):
        _close(p.grad, g, 1e-10, f"gradient of {p.name}", scale=np.max(np.abs(pairs[i - i % 2][1])))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_label_smoothing_matches_torch(smoothing, kind, dtype):
    z = normal((10, 4), dtype, "ls-z", smoothing, kind, scale=3.0)
    if kind == "labels":
        y = labels(10, 4, "ls-y", smoothing)
        ty = torch.from_numpy(y)
    else:
        t = rng_for("ls-p", smoothing).uniform(0.1, 1, (10, 4))
        y = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
        ty = torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
    loss = loss_fn(z, y)
    grad = loss_fn.backward()
    tz = torch.tensor(z, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tz, ty, label_smoothing=smoothing)
    tloss.backward()
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert grad.dtype == dtype
    assert abs(loss - tloss.item()) <= rtol * abs(tloss.item())
    _close(grad, tz.grad.numpy(), rtol, "gradient")


@pytest.mark.parametrize("name", ["mse", "bce"])
def test_regression_losses_match_torch(name):
    z = normal((8, 3), F64, "reg-loss", name, scale=4.0)
    if name == "mse":
        t = normal((8, 3), F64, "reg-t")
        ours, theirs = nn.MSELoss(), torch.nn.MSELoss()
    else:
        t = rng_for("bce-t").uniform(0, 1, (8, 3))
        ours, theirs = nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
    loss = ours(z, t)
    tz = torch.tensor(z, requires_grad=True)
    tloss = theirs(tz, torch.from_numpy(t))
    tloss.backward()
    assert abs(loss - tloss.item()) <= 1e-12 * abs(tloss.item())
    _close(ours.backward(), tz.grad.numpy(), 1e-12, "gradient")


def test_bce_with_logits_is_stable_at_extremes():
    z = np.array([[-1000.0, 1000.0, 0.0, 40.0]])
    t = np.array([[1.0, 0.0, 0.5, 1.0]])
    loss_fn = nn.BCEWithLogitsLoss()
    with np.errstate(all="raise"):
        loss = loss_fn(z, t)
        grad = loss_fn.backward()
    tloss = torch.nn.BCEWithLogitsLoss()(torch.from_numpy(z), torch.from_numpy(t)).item()
    assert np.isfinite(loss) and abs(loss - tloss) <= 1e-12 * tloss
    assert np.all(np.isfinite(grad))


OPTIMIZERS = {
    "sgd": (lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd-momentum-wd": (lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "nesterov": (lambda p: SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True,
                                           weight_decay=1e-3)),
    "adam": (lambda p: Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam-wd": (lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05),
                lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7,
                                           weight_decay=0.05)),
    "adamw": (lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
}


def _torch_params_in_our_layout(tmodel):
    out = []
    for tlayer in tmodel:
        if isinstance(tlayer, torch.nn.Linear):
            out += [tlayer.weight.detach().numpy().T, tlayer.bias.detach().numpy()]
        elif isinstance(tlayer, torch.nn.BatchNorm1d):
            out += [tlayer.weight.detach().numpy(), tlayer.bias.detach().numpy()]
    return out


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("per_parameter", [False, True], ids=["flat", "per-parameter"])
def test_optimizer_steps_match_torch(name, per_parameter):
    model, tmodel = build_pair(4)
    make_ours, make_theirs = OPTIMIZERS[name]
    params, tparams = model.parameters(), list(tmodel.parameters())
    frozen = params[1].data.copy()
    if per_parameter:
        # leave out the first bias: a gap in the flat buffer, so one update per parameter
        params, tparams = params[:1] + params[2:], tparams[:1] + tparams[2:]
    opt, topt = make_ours(params), make_theirs(tparams)
    assert opt.is_flat != per_parameter
    loss_fn = nn.CrossEntropyLoss()
    for step in range(6):
        X = normal((12, 6), F64, "opt", name, step)
        y = labels(12, 5, "opt-y", name, step)
        opt.zero_grad()
        loss_fn(model.forward(X), y)
        model.backward(loss_fn.backward())
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(X)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
    for p, expected in zip(model.parameters(), _torch_params_in_our_layout(tmodel)):
        _close(p.data, expected, 1e-8, f"{name}: {p.name} after 6 steps")
    # the parameter left out did not move
    if per_parameter:
        np.testing.assert_array_equal(model.parameters()[1].data, frozen)


def test_fit_sgd_equals_torch_training_loop():
    """fit (no shuffling, plain SGD, l2) = a hand-written torch loop with the same batches."""
    model, tmodel = build_pair(5, batchnorm=True)
    X = normal((40, 6), F64, "fit-torch")
    y = labels(40, 5, "fit-torch-y")
    l2 = 0.01
    model.fit(X, y, optimizer="sgd", lr=0.1, epochs=3, batch_size=16, shuffle=False, l2=l2)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    weights = [t.weight for t in tmodel if isinstance(t, torch.nn.Linear)]
    for _epoch in range(3):
        for lo in range(0, 40, 16):
            xb, yb = torch.from_numpy(X[lo:lo + 16]), torch.from_numpy(y[lo:lo + 16])
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tmodel(xb), yb)
            loss = loss + l2 * sum((w ** 2).sum() for w in weights)
            loss.backward()
            topt.step()
    for p, expected in zip(model.parameters(), _torch_params_in_our_layout(tmodel)):
        _close(p.data, expected, 1e-9, f"{p.name} after fit")
    bn, tbn = model[1], tmodel[1]
    _close(bn.running_mean, tbn.running_mean.numpy(), 1e-9, "running_mean after fit")
    _close(bn.running_var, tbn.running_var.numpy(), 1e-9, "running_var after fit")


def test_dropout_scaling_matches_torch_semantics():
    """Same mask -> same output and gradient as torch's inverted dropout (1/(1-p) scaling)."""
    model = nn.Sequential(nn.Dropout(0.3), dtype="float64", seed=0)
    x = normal((50, 20), F64, "dropout-torch")
    y = model.forward(x)
    mask = model[0]._mask
    kept = mask != 0
    assert 0.55 < kept.mean() < 0.85
    # torch: noise = bernoulli(1 - p) / (1 - p); y = x * noise
    np.testing.assert_array_equal(y[kept], x[kept] * (1 / 0.7))
    tnoise = torch.zeros(50, 20, dtype=torch.float64).bernoulli_(0.7).div_(0.7)
    assert set(np.unique(tnoise.numpy())) == set(np.unique(mask))
    np.testing.assert_array_equal(y[~kept], 0)
    dy = normal((50, 20), F64, "dropout-dy")
    np.testing.assert_array_equal(model.backward(dy), dy * mask)
    model.eval()
    np.testing.assert_array_equal(model.forward(x), x)


def _standalone_linear64(n_in, n_out, seed):
    """A Linear outside any model, its parameters float64 (a standalone layer's are float32:
    exact float64 steps need float64 arrays)."""
    layer = nn.Linear(n_in, n_out)
    layer.weight = nn.Parameter(normal((n_in, n_out), F64, "standalone-w", seed), name="weight")
    layer.bias = nn.Parameter(normal((n_out,), F64, "standalone-b", seed), name="bias")
    return layer


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_state_follows_the_parameters_into_a_model(name):
    # the optimizer is made on standalone layers (one state array per parameter) and
    # stepped; the layers then go into a Sequential, which moves the parameters into its
    # flat buffer, weights first (w1, w2, b1, b2, not w1, b1, w2, b2): the state must
    # follow each parameter there, as torch's per-parameter state does
    make_ours, make_theirs = OPTIMIZERS[name]
    lin1, lin2 = _standalone_linear64(3, 4, 1), _standalone_linear64(4, 2, 2)
    t1, t2 = torch.nn.Linear(3, 4, dtype=torch.float64), torch.nn.Linear(4, 2, dtype=torch.float64)
    ours, theirs = [lin1.weight, lin1.bias, lin2.weight, lin2.bias], \
        [t1.weight, t1.bias, t2.weight, t2.bias]
    with torch.no_grad():
        for p, tp in zip(ours, theirs):
            tp.copy_(torch.from_numpy(p.data.T.copy() if p.data.ndim == 2 else p.data))
    opt, topt = make_ours(ours), make_theirs(theirs)
    assert not opt.is_flat

    def step(k):
        for j, (p, tp) in enumerate(zip(ours, theirs)):
            g = normal(p.shape, F64, "regroup-grad", name, k, j)
            p.grad = g
            tp.grad = torch.from_numpy(g.T.copy() if g.ndim == 2 else g)
        opt.step()
        topt.step()

    def assert_close(when):
        for p, tp in zip(ours, theirs):
            expected = tp.detach().numpy()
            _close(p.data, expected.T if expected.ndim == 2 else expected, 1e-12,
                   f"{name}: {p.name} {when}")

    for k in range(2):
        step(k)
    assert_close("before the model")
    values = [p.data.copy() for p in ours]
    model = nn.Sequential(lin1, nn.ReLU(), lin2, dtype="float64", seed=0)   # re-initialises
    for p, v in zip(ours, values):
        p.data = v                       # carry on from where the steps left the layers
    assert opt.is_flat and opt._groups[0][0].size == model._flat_params.size
    for k in range(2, 5):
        step(k)
    assert_close("after the steps in the model")
