"""Optimizers with PyTorch's update rules: SGD (momentum, Nesterov, weight decay), Adam, AdamW.

Flat buffers: when the parameters given are views covering one contiguous stretch of a
model's flat parameter buffer (as ``model.parameters()`` are), the optimizer updates that
stretch as one array: one pass of vector operations for all parameters, and one state array
per statistic. Any other list of parameters is updated one parameter at a time. Both
ways compute the same numbers elementwise, so they give identical results. The updates are
the compiled cores of ``fastnn._kernels.optimizers``, the same ones the compiled training
step runs.

Create the optimizer after the model: it holds on to the arrays the parameters have then.
"""
import math
import numbers

import numpy as np

from fastnn._aligned import aligned_zeros
from fastnn._config import get_num_threads
from fastnn._kernels import optimizers as _kernels
from fastnn.nn.parameter import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get_optimizer"]


def _flat_groups(params):
    """([(data, grad)] arrays to update, is_flat, layout): one pair of 1-D views when the
    parameters tile one contiguous stretch of a shared flat buffer, else one pair per
    parameter. layout gives, for each parameter in order, (its group, its offset in that
    group, its size): where its elements sit in the per-group state arrays."""
    flats = [p._flat for p in params]
    if all(f is not None for f in flats):
        base_data, base_grad = flats[0][0], flats[0][1]
        if all(f[0] is base_data and f[1] is base_grad for f in flats):
            spans = sorted((f[2], p.size) for f, p in zip(flats, params))
            start = spans[0][0]
            end = start
            for offset, size in spans:
                if offset != end:
                    break
                end += size
            else:
                layout = tuple((0, f[2] - start, p.size) for f, p in zip(flats, params))
                return [(base_data[start:end], base_grad[start:end])], True, layout
    layout = tuple((i, 0, p.size) for i, p in enumerate(params))
    return [(p.data.reshape(-1), p.grad.reshape(-1)) for p in params], False, layout


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _non_negative(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


class Optimizer:
    """Base class: holds ``params``, the arrays to update, and ``step_count``."""

    def __init__(self, params, lr):
        if isinstance(params, Parameter):
            raise TypeError("params must be an iterable of Parameters (e.g. model.parameters()),"
                            " got a single Parameter")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer parameters must be Parameter objects, got "
                                f"{type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear more than once")
        self.params = params
        self.lr = _positive(lr, "lr")
        self.step_count = 0

    def _arrays(self):
        """([(data, grad)] to update, is_flat), rebuilt whenever the parameters' arrays
        change: a model binds them into its flat buffers when built, and rebinds them after
        unpickling or copying. When the grouping changes (an optimizer made on standalone
        layers, one group per parameter, whose layers then go into a model: one group),
        the state arrays are regrouped to match, each parameter's values carried over."""
        key = tuple(id(p.data) for p in self.params)
        if self.__dict__.get("_arrays_key") != key:
            groups, is_flat, layout = _flat_groups(self.params)
            self._regroup_state(groups, layout)
            self._arrays_cache = (groups, is_flat, layout)
            self._arrays_key = key
        return self._arrays_cache

    def _regroup_state(self, groups, layout):
        """Lay the per-group state arrays (_state's) out for `groups`: each parameter's
        stretch is copied from where `self._layout` (the layout they were made for, set by
        _state) put it to where `layout` puts it. Nothing changes when the layout is the
        same, or without state (or with state saved before layouts were recorded)."""
        old = self.__dict__.get("_layout")
        if old is None or old == layout:
            return
        self._layout = layout
        self.__dict__.pop("_hints", None)     # Adam's, per group; rebuilt on the next step
        for name, states in list(vars(self).items()):
            if not isinstance(states, dict) or not states:
                continue
            new = {}
            for (g_old, off_old, size), (g_new, off_new, _size) in zip(old, layout):
                src = states.get(g_old)
                if src is None:
                    continue
                dst = new.get(g_new)
                if dst is None:
                    like = groups[g_new][0]
                    dst = new[g_new] = aligned_zeros(like.shape, like.dtype)
                dst[off_new:off_new + size] = src[off_old:off_old + size]
            vars(self)[name] = new

    @property
    def _groups(self):
        return self._arrays()[0]

    @property
    def is_flat(self):
        """Whether the parameters tile one stretch of a flat buffer, updated as one array."""
        return self._arrays()[1]

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_arrays_cache", None)      # views: rebuilt from params after loading
        state.pop("_arrays_key", None)
        state.pop("_hints", None)             # a hint for speed only (Adam._hint)
        return state

    def _checkpoint(self):
        """The state as it is now (step count, per-group arrays copied), for _rollback."""
        return {name: ({i: a.copy() for i, a in value.items()} if isinstance(value, dict)
                       else value)
                for name, value in vars(self).items()}

    def _rollback(self, checkpoint):
        """Put back the state of a _checkpoint, dropping what was created since. State
        arrays that still exist are written in place: a compiled runner holding them
        then reads the values put back."""
        state = vars(self)
        for name in set(state) - set(checkpoint):
            del state[name]
        for name, value in checkpoint.items():
            current = state.get(name)
            if isinstance(value, dict) and isinstance(current, dict) \
                    and current.keys() == value.keys() \
                    and all(np.shape(current[i]) == np.shape(a) for i, a in value.items()):
                for i, a in value.items():
                    np.copyto(current[i], a)
            else:
                state[name] = value

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _positive(value, "lr")

    def zero_grad(self):
        for _data, grad in self._groups:
            grad.fill(0)

    def step(self):
        self.step_count += 1
        for i, (data, grad) in enumerate(self._groups):
            self._update(i, data, grad)

    def _update(self, i, data, grad):
        raise NotImplementedError

    def _state(self, name, i, like):
        """The per-group state array `name` (zeros at first)."""
        states = self.__dict__.setdefault("_" + name, {})
        arr = states.get(i)
        if arr is None:
            arr = states[i] = aligned_zeros(like.shape, like.dtype)
            self._layout = self._arrays()[2]      # the layout the state arrays follow
        return arr


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` (dampening 0):

        g = grad + weight_decay * p
        momentum: b = g at the first step, then b = momentum * b + g;
                  g = g + momentum * b (Nesterov) or g = b
        p = p - lr * g
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = _non_negative(momentum, "momentum")
        self.nesterov = bool(nesterov)
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        if self.nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum requires momentum > 0")

    def _update(self, i, data, grad):
        # without momentum the kernel never touches the buffer: pass data as a stand-in
        buf = self._state("momentum_buffer", i, data) if self.momentum else data
        _kernels.sgd_step(data, grad, buf, self.lr, self.momentum, 0.0, self.nesterov,
                          self.weight_decay, self.step_count == 1, get_num_threads())


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (weight decay added to the gradient, L2-style):

        g = grad + weight_decay * p
        m = m + (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    The kernel multiplies ``lr / (1 - beta1**t)`` and ``eps`` by ``sqrt(1 - beta2**t)``
    once per step instead of dividing every element by it: the same update to rounding,
    with one division per element fewer.
    """

    _decoupled = False
    # True: eps is added to sqrt(v) before the bias correction, as scikit-learn's Adam
    # does (its MLP estimators set it on their optimizer); PyTorch's place by default
    _eps_on_raw_moment = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if isinstance(b, bool) or not isinstance(b, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {b!r}")
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {b}")
        self.betas = (float(beta1), float(beta2))
        self.eps = _non_negative(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")

    def _update(self, i, data, grad):
        beta1, beta2 = self.betas
        _kernels.adam_step(data, grad, self._state("exp_avg", i, data),
                           self._state("exp_avg_sq", i, data), self.lr, beta1, beta2, self.eps,
                           self.weight_decay, self._decoupled, self.step_count,
                           get_num_threads(), self._hint(i, data), self._eps_on_raw_moment)

    def _hint(self, i, data):
        """Group i's hint for the float32 kernel, which steers values on their way to
        subnormal around its vector loop (csrc/fastnn_adam.h); None for float64. It
        changes no result, so it is not saved with the optimizer."""
        if data.dtype != np.float32:
            return None
        hints = self.__dict__.setdefault("_hints", {})
        size = _kernels.adam_hint_size(data.size)
        hint = hints.get(i)
        if hint is None or hint.shape[0] != size:
            hint = hints[i] = np.zeros(size, dtype=np.uint8)
        return hint


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: first
    p = p * (1 - lr * weight_decay), then the Adam step without L2 in the gradient."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


_NAMES = {
    "sgd": lambda params, lr: SGD(params, lr),
    "momentum": lambda params, lr: SGD(params, lr, momentum=0.9),
    "nesterov": lambda params, lr: SGD(params, lr, momentum=0.9, nesterov=True),
    "adam": lambda params, lr: Adam(params, lr),
    "adamw": lambda params, lr: AdamW(params, lr),
}


def check_optimizer_name(name):
    if name not in _NAMES:
        raise ValueError(f"unknown optimizer {name!r}; use one of {sorted(_NAMES)} or an "
                         "optimizer object")


def get_optimizer(optimizer, params, lr):
    """An optimizer from a name ("sgd", "momentum" (0.9), "nesterov", "adam", "adamw")
    with learning rate lr, or the optimizer object given."""
    if isinstance(optimizer, str):
        check_optimizer_name(optimizer)
        return _NAMES[optimizer](params, lr)
    if callable(getattr(optimizer, "step", None)):
        return optimizer
    raise TypeError(f"optimizer must be a name or an object with step(), got {optimizer!r}")
