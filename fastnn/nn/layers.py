"""Layers: each one's backward sits beside its forward, and all arithmetic is a kernel call.

A layer computes with a *kernel module*: ``fastnn.ops`` (compiled, the default) or any
module with the same functions, such as ``fastnn.reference``. Pass ``kernels=`` to
:class:`~fastnn.nn.Sequential` (or set ``layer.kernels``) to choose one per model; there
is no process-wide switch, so two models with different kernels can run side by side.

``forward(x)`` stores what ``backward`` needs on the layer (so one model trains in one
thread at a time); ``infer(x)`` is the eval-mode forward that stores nothing and writes
nothing, so several threads may call it on one model at once.
"""
import importlib
import math

import numpy as np

from fastnn._validation import (batchnorm_eps, batchnorm_momentum, dropout_probability,
                                positive_count)
from fastnn.nn import _fused
from fastnn.nn.parameter import Parameter

__all__ = ["Module", "Linear", "ReLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm1d",
           "resolve_kernels"]

_KERNEL_FUNCTIONS = ("linear_forward", "linear_backward", "relu", "relu_backward", "sigmoid",
                     "sigmoid_backward", "tanh", "tanh_backward", "batchnorm_forward",
                     "batchnorm_backward", "dropout", "cross_entropy", "one_hot", "mse_loss",
                     "binary_cross_entropy_with_logits")


def resolve_kernels(kernels):
    """None -> fastnn.ops; "ops" / "reference" -> that fastnn module; a module is checked
    to provide the kernel functions the layers call."""
    if kernels is None or isinstance(kernels, str):
        name = "ops" if kernels is None else kernels
        if name not in ("ops", "reference"):
            raise ValueError(f'kernels must be "ops", "reference" or a module, got {name!r}')
        return importlib.import_module(f"fastnn.{name}")
    missing = [f for f in _KERNEL_FUNCTIONS if not callable(getattr(kernels, f, None))]
    if missing:
        raise TypeError(f"kernels {getattr(kernels, '__name__', kernels)!r} lacks "
                        f"{', '.join(missing)}")
    return kernels


class Module:
    """Base class of layers.

    A subclass defines ``forward(x)`` and ``backward(dy) -> dx`` (writing each parameter's
    ``.grad``), keeps its :class:`Parameter` objects as attributes (``parameters()`` finds
    them in definition order), and may define ``reset_parameters(rng)`` to initialise them
    from the model's generator and ``infer(x)`` for a stateless eval-mode forward.
    """

    #: names of parameters that fit's l1/l2 penalties apply to (Linear: its weight)
    penalty_parameters = ()
    #: True for layers whose output has the width of their input (activations, dropout)
    preserves_width = False
    #: attributes holding per-batch caches, dropped when the layer is pickled or copied
    _transient = ()

    def __init__(self):
        self.training = True
        self._kernels = None

    # -- kernels ---------------------------------------------------------------------
    @property
    def kernels(self):
        k = self._kernels
        return k if k is not None else resolve_kernels(None)

    @kernels.setter
    def kernels(self, value):
        self._kernels = None if value is None else resolve_kernels(value)

    # -- parameters and state --------------------------------------------------------
    def named_parameters(self):
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Parameter)]

    def parameters(self):
        return [v for _k, v in self.named_parameters()]

    def buffers(self):
        """Non-trainable state saved with the model, as {name: array} (views once bound).

        A layer that returns its own attributes here (``{"n": self.n}``) needs nothing
        more; one that keeps its buffers elsewhere overrides ``_bind_buffer`` and
        ``_set_buffer`` as well."""
        return {}

    def _bind_buffer(self, name, view):
        """Adopt ``view`` (flat, a slice of the model's buffer) as buffer ``name``, values
        kept: by default the attribute of that name becomes a view of the right shape."""
        current = getattr(self, name, None)
        if current is None or current is not self.buffers().get(name):
            raise TypeError(f"{type(self).__name__}.buffers() returns {name!r}, which is "
                            f"not its attribute {name!r}: override _bind_buffer and "
                            "_set_buffer to say where that buffer lives")
        shaped = view.reshape(np.shape(current))
        shaped[...] = current
        setattr(self, name, shaped)

    def _set_buffer(self, name, value):
        target = self.buffers()[name]
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"{name} must have shape {target.shape}, got {value.shape}")
        target[...] = value

    def reset_parameters(self, rng):
        """(Re)initialise the parameters from a numpy Generator (no-op by default)."""

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    # -- mode --------------------------------------------------------------------------
    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # -- computation -----------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def infer(self, x):
        """Eval-mode forward. Layers without a stateless version run ``forward`` on a
        shallow copy of themselves in eval mode: the mode and whatever forward caches
        live on the copy, so neither threads predicting at once nor a fit running in
        another thread see this layer change (it shares the parameters, read only)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.training = False
        return clone.forward(x)

    def __call__(self, x):
        return self.forward(x)

    # -- pickling and copying: caches are dropped, a kernel module is kept by name ------------
    def __getstate__(self):
        state = self.__dict__.copy()
        for name in self._transient:
            state[name] = None
        if state.get("_kernels") is not None:
            state["_kernels"] = state["_kernels"].__name__
        return state

    def __setstate__(self, state):
        if isinstance(state.get("_kernels"), str):
            state["_kernels"] = resolve_kernels(importlib.import_module(state["_kernels"]))
        self.__dict__.update(state)

    # -- description (serialization) -----------------------------------------------------
    def _config(self):
        """Constructor arguments as JSON values; None: not serializable."""
        return None

    def __repr__(self):
        cfg = self._config() or {}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


class Linear(Module):
    """y = x @ weight + bias, with ``weight.data`` of shape (in_features, out_features).

    The weight is stored as the transpose of PyTorch's (rows are inputs), which is the
    layout the GEMM wants; copy ``torch_linear.weight.T`` into it to move weights across.

    Initialisation (``init``):
      * ``"kaiming_uniform"`` (default), PyTorch's default for ``nn.Linear``: weight and
        bias uniform in [-1/sqrt(in), 1/sqrt(in)] (Kaiming-uniform with a = sqrt(5));
      * ``"he_uniform"``: weight uniform in [-sqrt(6/in), sqrt(6/in)], bias 0;
      * ``"glorot_uniform"``: weight uniform in [-sqrt(6/(in+out)), sqrt(6/(in+out))], bias 0.
    Numbers are drawn in float64 (weight first, in its (in, out) C order, then bias) from
    the model's seeded generator and rounded to the model's dtype, so one seed gives the
    same weights in float32 and float64 up to that rounding.
    """

    INITS = ("kaiming_uniform", "he_uniform", "glorot_uniform")
    penalty_parameters = ("weight",)
    _transient = ("_x",)

    def __init__(self, in_features, out_features, bias=True, init="kaiming_uniform"):
        super().__init__()
        self.in_features = positive_count(in_features, "in_features")
        self.out_features = positive_count(out_features, "out_features")
        if init not in self.INITS:
            raise ValueError(f"init must be one of {self.INITS}, got {init!r}")
        self.init = init
        self.weight = Parameter(np.empty((self.in_features, self.out_features), np.float32),
                                name="weight")
        self.bias = (Parameter(np.empty(self.out_features, np.float32), name="bias")
                     if bias else None)
        self._x = None
        self.reset_parameters(np.random.default_rng())

    def reset_parameters(self, rng):
        fan_in, fan_out = self.in_features, self.out_features
        if self.init == "kaiming_uniform":
            bound = 1.0 / math.sqrt(fan_in)
            bias_bound = bound
        elif self.init == "he_uniform":
            bound, bias_bound = math.sqrt(6.0 / fan_in), 0.0
        else:
            bound, bias_bound = math.sqrt(6.0 / (fan_in + fan_out)), 0.0
        self.weight.data[...] = rng.uniform(-bound, bound, self.weight.shape)
        if self.bias is not None:
            self.bias.data[...] = (rng.uniform(-bias_bound, bias_bound, self.bias.shape)
                                   if bias_bound else 0.0)

    def _b(self):
        return None if self.bias is None else self.bias.data

    def forward(self, x):
        self._x = x
        return self.kernels.linear_forward(x, self.weight.data, self._b())

    def infer(self, x):
        return self.kernels.linear_forward(x, self.weight.data, self._b())

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        dx, dw, db = self.kernels.linear_backward(self._x, self.weight.data, dy)
        self.weight.grad[...] = dw
        if self.bias is not None:
            self.bias.grad[...] = db
        return dx

    def _config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "init": self.init}


class _Activation(Module):
    """Elementwise activation; backward uses the cached input (ReLU) or output (others)."""

    _forward_name = _backward_name = None
    _cache_input = False
    preserves_width = True
    _transient = ("_cache",)
    _cache = None

    def forward(self, x):
        y = getattr(self.kernels, self._forward_name)(x)
        self._cache = x if self._cache_input else y
        return y

    def infer(self, x):
        return getattr(self.kernels, self._forward_name)(x)

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return getattr(self.kernels, self._backward_name)(self._cache, dy)

    def _config(self):
        return {}


class ReLU(_Activation):
    """max(x, 0); gradient 0 at x <= 0."""
    _forward_name, _backward_name, _cache_input = "relu", "relu_backward", True


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), stable for any finite x."""
    _forward_name, _backward_name = "sigmoid", "sigmoid_backward"


class Tanh(_Activation):
    """Hyperbolic tangent."""
    _forward_name, _backward_name = "tanh", "tanh_backward"


class Dropout(Module):
    """Inverted dropout: in training mode each unit is zeroed with probability p and the
    kept ones are scaled by 1/(1-p); identity in eval mode (and for p = 0).

    The kernel's seed for each call is drawn from the model's generator, so training is
    reproducible from the model's seed. p outside [0, 1) raises ValueError.
    """

    preserves_width = True
    _transient = ("_mask",)

    def __init__(self, p=0.5):
        super().__init__()
        self.p = dropout_probability(p)
        self._rng = np.random.default_rng()
        self._mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = False          # the identity; None: no forward yet
            return x
        seed = int(self._rng.integers(0, 2**64, dtype=np.uint64))
        y, self._mask = self.kernels.dropout(x, self.p, seed)
        return y

    def infer(self, x):
        return x

    def backward(self, dy):
        if self._mask is None:
            raise RuntimeError("Dropout.backward called before forward")
        return dy if self._mask is False else dy * self._mask

    def _config(self):
        return {"p": self.p}


class BatchNorm1d(Module):
    """Batch normalisation of (n, num_features) inputs, with PyTorch's semantics.

    Training mode normalises with the batch mean and biased variance and updates
    ``running = (1 - momentum) * running + momentum * batch_stat`` using the *unbiased*
    batch variance for ``running_var``; eval mode normalises with the running statistics.
    ``weight`` (gamma) starts at 1, ``bias`` (beta) at 0, running_mean at 0, running_var
    at 1. A training batch of one row has no variance: ValueError, as in PyTorch.
    """

    _transient = ("_cache",)

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features = positive_count(num_features, "num_features")
        self.eps = batchnorm_eps(eps)
        if self.eps == 0:       # the kernels take 0; a layer would divide by zero
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        self.momentum = batchnorm_momentum(momentum)
        self.weight = Parameter(np.ones(self.num_features, np.float32), name="weight")
        self.bias = Parameter(np.zeros(self.num_features, np.float32), name="bias")
        self._buffers = {"running_mean": np.zeros(self.num_features, np.float32),
                         "running_var": np.ones(self.num_features, np.float32)}
        self._cache = None

    @property
    def in_features(self):
        return self.num_features

    @property
    def out_features(self):
        return self.num_features

    def reset_parameters(self, rng):
        self.weight.data[...] = 1
        self.bias.data[...] = 0
        self.running_mean[...] = 0
        self.running_var[...] = 1

    # running statistics: assignment copies into the (flat-buffer) arrays
    @property
    def running_mean(self):
        return self._buffers["running_mean"]

    @running_mean.setter
    def running_mean(self, value):
        self._set_buffer("running_mean", value)

    @property
    def running_var(self):
        return self._buffers["running_var"]

    @running_var.setter
    def running_var(self, value):
        self._set_buffer("running_var", value)

    def buffers(self):
        return dict(self._buffers)

    def _set_buffer(self, name, value):
        target = self._buffers[name]
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"{name} must have shape {target.shape}, got {value.shape}")
        target[...] = value

    def _bind_buffer(self, name, view):
        view[...] = self._buffers[name]
        self._buffers[name] = view

    def _check(self, x):
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}) expects input of shape "
                             f"(n, {self.num_features}), got {x.shape}")

    def forward(self, x):
        x = np.asarray(x)
        self._check(x)
        if not self.training:
            self._cache = ("eval", x)
            return self.infer(x)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"BatchNorm1d in training mode needs more than 1 row per batch "
                             f"(got a batch of shape {x.shape}): the batch variance of one "
                             "row is undefined; use eval mode or a larger batch")
        k = self.kernels
        y, cache = k.batchnorm_forward(x, self.weight.data, self.bias.data, self.eps)
        _x_hat, mean, var, _inv_std, _gamma = cache
        rm, rv = self.running_mean, self.running_var
        _fused.bn_running_update(k, mean.astype(rm.dtype, copy=False),
                                 var.astype(rv.dtype, copy=False), n, self.momentum, rm, rv)
        self._cache = ("train", cache)
        return y

    def _eval_operands(self, x):
        dtype = np.result_type(x.dtype, self.weight.dtype)
        if dtype.kind != "f":
            dtype = np.dtype(np.float64)
        return [np.ascontiguousarray(a, dtype=dtype) for a in
                (x, self.weight.data, self.bias.data, self.running_mean, self.running_var)]

    def infer(self, x):
        x = np.asarray(x)
        self._check(x)
        return _fused.bn_eval(self.kernels, *self._eval_operands(x), self.eps)

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError("BatchNorm1d.backward called before forward")
        mode, saved = self._cache
        if mode == "eval":
            # eval mode is the fixed affine map y = x * alpha + shift
            x, gamma, _beta, rm, rv = self._eval_operands(saved)
            inv_std = 1 / np.sqrt(rv + rv.dtype.type(self.eps))
            dx = dy * (inv_std * gamma)
            dgamma = (dy * ((x - rm) * inv_std)).sum(axis=0)
            dbeta = dy.sum(axis=0)
        else:
            dx, dgamma, dbeta = self.kernels.batchnorm_backward(dy, saved)
        self.weight.grad[...] = dgamma
        self.bias.grad[...] = dbeta
        return dx

    def _config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}
