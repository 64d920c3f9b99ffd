"""fastnn.optim: update rules against a NumPy transcription of PyTorch's (torch itself in
test_torch_parity.py), flat-buffer and per-parameter updates identical, argument checks."""
import numpy as np
import pytest

from fastnn import nn
from fastnn.optim import SGD, Adam, AdamW, get_optimizer

from conftest import normal


def numpy_sgd(p, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    buf = None
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def numpy_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
               eps_on_raw_moment=False):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = m + (1 - betas[0]) * (g - m)
        v = betas[1] * v + (1 - betas[1]) * g * g
        if eps_on_raw_moment:       # scikit-learn's Adam
            step = lr * np.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t)
            p = p - step * m / (np.sqrt(v) + eps)
            continue
        denom = np.sqrt(v) / np.sqrt(1 - betas[1] ** t) + eps
        p = p - lr / (1 - betas[0] ** t) * m / denom
    return p


def sklearn_style_adam(params, **kwargs):
    adam = Adam(params, **kwargs)
    adam._eps_on_raw_moment = True
    return adam


CASES = {
    "sgd": (lambda ps: SGD(ps, lr=0.1), lambda p, gs: numpy_sgd(p, gs, 0.1)),
    "momentum": (lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
                 lambda p, gs: numpy_sgd(p, gs, 0.1, 0.9, weight_decay=0.01)),
    "nesterov": (lambda ps: SGD(ps, lr=0.1, momentum=0.7, nesterov=True),
                 lambda p, gs: numpy_sgd(p, gs, 0.1, 0.7, nesterov=True)),
    "adam": (lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
             lambda p, gs: numpy_adam(p, gs, 0.01, weight_decay=0.1)),
    # eps large enough to tell where it is added
    "adam-eps-on-raw-moment": (lambda ps: sklearn_style_adam(ps, lr=0.01, eps=0.1),
                               lambda p, gs: numpy_adam(p, gs, 0.01, eps=0.1,
                                                        eps_on_raw_moment=True)),
    "adamw": (lambda ps: AdamW(ps, lr=0.01, betas=(0.8, 0.9), weight_decay=0.2),
              lambda p, gs: numpy_adam(p, gs, 0.01, (0.8, 0.9), weight_decay=0.2,
                                       decoupled=True)),
}


def model_and_grads(dtype, n_steps=5):
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3), dtype=dtype, seed=0)
    grads = [normal(model._flat_grads.shape, dtype, "optim-grad", step) for step in range(n_steps)]
    return model, grads


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_rules_match_numpy_transcription(name, dtype):
    make, oracle = CASES[name]
    model, grads = model_and_grads(dtype)
    start = model._flat_params.astype(np.float64)
    opt = make(model.parameters())
    assert opt.is_flat
    for g in grads:
        model._flat_grads[...] = g
        opt.step()
    expected = oracle(start, [g.astype(np.float64) for g in grads])
    # float64: a few roundings per step; float32: rounding of every intermediate (~1e-7)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    scale = np.abs(expected).max()
    assert np.abs(model._flat_params - expected).max() <= rtol * scale


def test_flat_buffer_detection():
    model, _ = model_and_grads(np.float32)
    params = model.parameters()
    assert SGD(params, lr=0.1).is_flat
    assert SGD(params[::-1], lr=0.1).is_flat               # order does not matter
    assert SGD(params[1:], lr=0.1).is_flat                 # one contiguous stretch
    assert not SGD(params[:1] + params[2:], lr=0.1).is_flat    # a gap: per parameter


@pytest.mark.parametrize("name", sorted(CASES))
def test_flat_and_per_parameter_updates_are_identical(name):
    make = CASES[name][0]
    model, grads = model_and_grads(np.float32)
    loose = [nn.Parameter(p.data) for p in model.parameters()]     # copies, no flat buffer
    flat_opt, loose_opt = make(model.parameters()), make(loose)
    assert flat_opt.is_flat and not loose_opt.is_flat
    for g in grads:
        model._flat_grads[...] = g
        for p, q in zip(model.parameters(), loose):
            q.grad = p.grad
        flat_opt.step()
        loose_opt.step()
    for p, q in zip(model.parameters(), loose):
        np.testing.assert_array_equal(p.data, q.data)


def test_zero_grad_and_lr():
    model, grads = model_and_grads(np.float64, 1)
    opt = Adam(model.parameters(), lr=0.1)
    model._flat_grads[...] = grads[0]
    opt.zero_grad()
    assert not model._flat_grads.any()
    opt.lr = 0.5
    assert opt.lr == 0.5
    with pytest.raises(ValueError, match="lr"):
        opt.lr = 0


@pytest.mark.parametrize("make, message", [
    (lambda ps: SGD(ps, lr=0), "lr"),
    (lambda ps: SGD(ps, lr=-1), "lr"),
    (lambda ps: SGD(ps, lr=float("inf")), "lr"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), "momentum"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "Nesterov"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda ps: Adam(ps, betas=(1.0, 0.9)), "beta1"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), "beta2"),
    (lambda ps: Adam(ps, betas=(0.9,)), r"betas must be a pair \(beta1, beta2\)"),
    (lambda ps: Adam(ps, betas=0.9), r"betas must be a pair"),
    (lambda ps: Adam(ps, betas=(0.9, float("nan"))), "beta2"),
    (lambda ps: Adam(ps, eps=-1e-8), "eps"),
    (lambda ps: AdamW(ps, weight_decay=-0.01), "weight_decay"),
    (lambda ps: Adam([]), "empty"),
    (lambda ps: Adam(ps + ps[:1]), "more than once"),
    (lambda ps: get_optimizer("rmsprop", ps, 0.1), "unknown optimizer"),
])
def test_bad_optimizer_arguments(make, message):
    model, _ = model_and_grads(np.float64, 1)
    with pytest.raises(ValueError, match=message):
        make(model.parameters())


def test_betas_are_real_numbers():
    model, _ = model_and_grads(np.float64, 1)
    with pytest.raises(TypeError, match="beta1 must be a real number"):
        Adam(model.parameters(), betas=("0.9", 0.999))


def test_optimizer_takes_only_parameters():
    with pytest.raises(TypeError):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError):
        SGD(nn.Parameter(np.zeros(3)), lr=0.1)
    # standalone parameters (not in a model) are updated one by one
    p = nn.Parameter(np.ones((2, 3)))
    p.grad[...] = 1.0
    opt = SGD([p], lr=0.5)
    assert not opt.is_flat
    opt.step()
    np.testing.assert_array_equal(p.data, np.full((2, 3), 0.5))


@pytest.mark.parametrize("model_first", [True, False])
def test_pickled_optimizer_keeps_training_its_model(model_first):
    # The optimizer's arrays are views into the model's flat buffers; after unpickling,
    # the model rebinds them, and the optimizer must follow instead of updating copies.
    import pickle
    from fastnn import Linear, Sequential
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    y = rng.integers(0, 2, 20)
    model = Sequential(Linear(3, 2), dtype="float64", seed=0)
    opt = Adam(model.parameters(), lr=0.1)
    model.fit(X, y, optimizer=opt, epochs=1)
    if model_first:
        model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    else:
        opt2, model2 = pickle.loads(pickle.dumps((opt, model)))
    model.fit(X, y, optimizer=opt, epochs=2)
    model2.fit(X, y, optimizer=opt2, epochs=2)
    np.testing.assert_array_equal(model2._flat_params, model._flat_params)


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: Adam(p, lr=0.1)], ids=["sgd-momentum", "adam"])
def test_optimizer_made_before_the_model_keeps_each_parameters_state(make):
    # one state array per parameter at first; in the model, one for the flat buffer, with
    # each parameter's values where the parameter now is (weights first, then biases)
    lin1, lin2 = nn.Linear(3, 4), nn.Linear(4, 2)
    params = lin1.parameters() + lin2.parameters()
    opt = make(params)
    for p in params:
        p.grad = normal(p.shape, np.float32, "before-model", p.size)
    opt.step()
    names = [n for n in ("momentum_buffer", "exp_avg", "exp_avg_sq") if f"_{n}" in vars(opt)]
    before = {n: [vars(opt)[f"_{n}"][i].reshape(p.shape).copy() for i, p in enumerate(params)]
              for n in names}
    model = nn.Sequential(lin1, nn.ReLU(), lin2, seed=0)
    assert opt.is_flat
    for n in names:
        (flat,) = vars(opt)[f"_{n}"].values()
        assert flat.shape == model._flat_params.shape
        for p, expected in zip(params, before[n]):
            offset = p._flat[2]
            np.testing.assert_array_equal(flat[offset:offset + p.size].reshape(p.shape),
                                          expected)
    opt.step()                           # and the step runs on the new layout
