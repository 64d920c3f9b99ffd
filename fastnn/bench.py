"""Speed comparison: fastnn against PyTorch, scikit-learn, hand-written NumPy and the GEMM floor.

``python -m fastnn bench`` and ``python bench/compare.py`` both run :func:`main`; see
``bench/README.md`` for the workloads, the method and how to read the table.

Only NumPy is required. PyTorch, scikit-learn and threadpoolctl are used when installed;
a contender that is missing or fails shows ``n/a`` with the reason and the run goes on.

Method, in short: every contender gets the same thread count (``--threads``, default all
cores: ``torch.set_num_threads``, ``fastnn.set_num_threads`` and threadpoolctl for BLAS and
OpenMP); each one is warmed up, then the repetitions are interleaved across contenders
(the order rotates every repetition, with a pause before each timed run so that the
previous contender's idle threads are asleep) and the table gives the median, the
min-max spread, the ratio to fastnn (contender time / fastnn time: above 1 means fastnn
is faster), the ratio to the GEMM floor and the test accuracy each training run reached.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import fnmatch
import gc
import importlib.util
import io
import json
import math
import os
import platform
import pstats
import statistics
import sys
import time
import warnings

import numpy as np

from fastnn._config import MAX_THREADS, usable_cores
from fastnn._validation import int_in_range

ARCH = (784, 256, 128, 10)
LR = 1e-3
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
SEED = 0

# Seconds of pause before each timed run. Each library keeps its own pool of threads
# (fastnn calls scipy's OpenBLAS, the NumPy contenders NumPy's, PyTorch its OpenMP
# threads), and an OpenBLAS pool spins for about 2^28 cycles (0.1 s at 2 GHz) after its
# last call before it sleeps. Without the pause each contender shared the second core
# with the previous one's spinning threads: a 256-row predict took 1.6-2.0 ms after
# another contender and 0.66-0.81 ms after itself, and the GEMM floor 1.6-1.8 against
# 0.56-0.57 ms. In a program using one library, nothing else spins.
SETTLE_SECONDS = 0.25

FASTNN = "fastnn"
REFERENCE = "fastnn.reference"
PER_LAYER = "fastnn per-layer"
TORCH = "PyTorch"
SKLEARN = "scikit-learn"
NUMPY = "NumPy"
FLOOR = "GEMM floor"
SCIPY_FLOOR = "GEMM floor, scipy's BLAS"

COLUMNS = ("workload", "contender", "median", "min-max", "time / fastnn",
           "time / GEMM floor", "accuracy", "note")


class Unavailable(Exception):
    """A contender cannot run this workload (library missing, feature not there yet)."""


# --------------------------------------------------------------------------------------
# Sizes and data
# --------------------------------------------------------------------------------------

class Sizes:
    """How much work one run does; ``--quick`` and ``--tiny`` shrink it."""

    def __init__(self, mode="full", samples=None, reps=None):
        self.mode = mode
        # workload_budget: seconds the timed repetitions of one workload may take (all
        # contenders together), estimated from the warm-up; the repetitions drop from
        # `reps` towards `min_reps` on a slow machine so that a full run stays under
        # 10 minutes on 2 cores.
        if mode == "full":
            self.n_train, self.n_test, self.reps, self.min_reps = 60_000, 10_000, 5, 3
            self.n_warmup = 6_000
            self.digits_epochs, self.fit_epochs, self.fit_reps = 200, 2, 3
            self.predict_budget = 0.15     # seconds of calls per repetition
            self.workload_budget = 60.0
            self.settle = SETTLE_SECONDS
        elif mode == "quick":
            self.n_train, self.n_test, self.reps, self.min_reps = 4_000, 1_000, 3, 2
            self.n_warmup = 500
            self.digits_epochs, self.fit_epochs, self.fit_reps = 10, 1, 2
            self.predict_budget = 0.03
            self.workload_budget = 4.0
            self.settle = 0.1          # most of the spin, and the run stays under a minute
        elif mode == "tiny":
            self.n_train, self.n_test, self.reps, self.min_reps = 512, 256, 2, 2
            self.n_warmup = 128
            self.digits_epochs, self.fit_epochs, self.fit_reps = 2, 1, 2
            self.predict_budget = 0.002
            self.workload_budget = math.inf
            self.settle = 0.0
        else:
            raise ValueError(f"unknown size mode {mode!r}")
        if samples is not None:
            self.n_train = int(samples)
            self.n_warmup = min(self.n_warmup, self.n_train)
        if reps is not None:
            self.reps = self.fit_reps = self.min_reps = int(reps)

    def as_dict(self):
        return dict(vars(self))


class Problem:
    """A learnable synthetic 10-class problem: labels from a random teacher network.

    X is standard normal in 784 dimensions, y = argmax(tanh(1.5 X A) B) with A (784, 64)
    and B (64, 10) random. It is deterministic (a perfect classifier exists) and not
    linearly separable, and the student MLP reaches roughly 60-70% test accuracy after
    one epoch of 60,000 samples, so accuracy still says whether an epoch did its work.
    """

    def __init__(self, n_train, n_test, seed=SEED):
        rng = np.random.default_rng(seed)
        n = n_train + n_test
        X = rng.standard_normal((n, ARCH[0]), dtype=np.float32)
        A = rng.standard_normal((ARCH[0], 64)) / math.sqrt(ARCH[0])
        B = rng.standard_normal((64, ARCH[-1]))
        y = np.argmax(np.tanh(1.5 * (X @ A)) @ B, axis=1).astype(np.int64)
        self.X, self.y = X[:n_train], y[:n_train]
        self.X_test, self.y_test = X[n_train:], y[n_train:]
        self._f64 = None

    def arrays(self, dtype):
        if np.dtype(dtype) == np.float32:
            return self.X, self.y, self.X_test, self.y_test
        if self._f64 is None:
            self._f64 = (self.X.astype(np.float64), self.X_test.astype(np.float64))
        return self._f64[0], self.y, self._f64[1], self.y_test


def init_weights(sizes=ARCH, seed=SEED):
    """Glorot-uniform weights (in, out) and zero biases, float64; every contender starts here."""
    rng = np.random.default_rng(seed + 1)
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = math.sqrt(6.0 / (n_in + n_out))
        weights.append((rng.uniform(-bound, bound, (n_in, n_out)), np.zeros(n_out)))
    return weights


def load_digits_split():
    """The 1,797 x 64 digits set scaled to [0, 1], split 1,347 train / 450 test (fixed)."""
    data = None
    try:
        from sklearn.datasets import load_digits
        data = load_digits()
        X, y = data.data, data.target
    except ImportError:
        try:
            from fastnn import datasets as fds
            X, y = fds.load_digits(return_X_y=True)
        except Exception as exc:
            raise Unavailable(f"no digits data set (needs scikit-learn or "
                              f"fastnn.datasets.load_digits): {_reason(exc)}") from None
    X = np.asarray(X, dtype=np.float32) / np.float32(16.0)
    y = np.asarray(y).astype(np.int64)
    perm = np.random.default_rng(SEED).permutation(len(X))
    train, test = perm[:1347], perm[1347:]
    return X[train], y[train], X[test], y[test]


# --------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------

def _preload(contender_filter=None):
    """Import the optional libraries up front so thread limits reach their thread pools."""
    for name, contender in (("threadpoolctl", None), ("torch", TORCH),
                            ("sklearn", SKLEARN), ("fastnn", None)):
        if contender and contender_filter and not _matches(contender, contender_filter):
            continue
        try:
            __import__(name)
        except Exception:        # a missing or broken optional install must not stop the bench
            pass


def _mod(name):
    return sys.modules.get(name)


@contextlib.contextmanager
def thread_limit(n):
    """Run with n threads in BLAS, OpenMP runtimes, PyTorch and fastnn."""
    stack = contextlib.ExitStack()
    with stack:
        tpc = _mod("threadpoolctl")
        if tpc is not None:
            stack.enter_context(tpc.threadpool_limits(limits=n))
        torch = _mod("torch")
        if torch is not None:
            old = torch.get_num_threads()
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, old)
        fastnn = _mod("fastnn")
        if fastnn is not None and hasattr(fastnn, "set_num_threads"):
            old_f = fastnn.get_num_threads()
            fastnn.set_num_threads(n)
            stack.callback(fastnn.set_num_threads, old_f)
        yield


class CpuMeter:
    """How much CPU other processes took while we ran: busy time on the machine from
    /proc/stat minus this process's own CPU time, over wall time x cores (Linux only)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = (sum(fields[:8]) - idle) / hz          # user..steal, guest is inside user
        t = os.times()
        return busy, t.user + t.system, time.perf_counter()

    def others_share(self):
        """Fraction of all cores used by other processes since construction, or None."""
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        cores = os.cpu_count() or 1
        if wall <= 0:
            return None
        return min(1.0, max(0.0, (busy - own) / (wall * cores)))


# --------------------------------------------------------------------------------------
# Contenders. A trial is prepared (untimed: fresh model from the shared initial
# weights), run (timed) and scored (untimed: test accuracy, or None).
# --------------------------------------------------------------------------------------

class Trial:
    calls = 1          # timed calls per run (predict trials loop many calls)
    threads = None     # None: the run's thread count
    note = ""

    def prepare(self, warm=False):
        pass

    def warm_scale(self):
        """A timed run costs about this many times the warm-up run."""
        n = getattr(self, "X", None)
        if n is None:
            return 1.0
        return len(n) / max(1, min(len(n), self.ctx.sizes.n_warmup))

    def run(self):
        raise NotImplementedError

    def score(self):
        return None


def _accuracy(scores, y):
    return float(np.mean(np.argmax(scores, axis=1) == y))


def _layer_plan(spec):
    """[(n_in, n_out, batch_norm, dropout)] for the Linear layers of a workload's MLP."""
    sizes = spec.get("sizes", ARCH)
    plan = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        hidden = i < len(sizes) - 2
        plan.append((n_in, n_out, hidden and spec.get("batch_norm", False),
                     spec.get("dropout", 0.0) if hidden else 0.0))
    return plan


# ---- fastnn ---------------------------------------------------------------------------

def _import_fastnn():
    try:
        import fastnn
    except Exception as exc:
        raise Unavailable(f"import fastnn failed: {_reason(exc)}") from None
    return fastnn


def _fastnn_attr(fn, name):
    obj = getattr(fn, name, None)
    if obj is None:
        raise Unavailable(f"fastnn.{name} not available yet")
    return obj


def fastnn_model(spec, dtype, weights, kernels=None):
    """A fastnn.Sequential of the workload's MLP holding the shared initial weights."""
    fn = _import_fastnn()
    Sequential, Linear, ReLU = (_fastnn_attr(fn, n) for n in ("Sequential", "Linear", "ReLU"))
    layers, linears = [], []
    plan = _layer_plan(spec)
    for i, (n_in, n_out, bn, p) in enumerate(plan):
        linears.append(Linear(n_in, n_out))
        layers.append(linears[-1])
        if i < len(plan) - 1:
            if bn:
                layers.append(_fastnn_attr(fn, "BatchNorm1d")(n_out, eps=BN_EPS,
                                                              momentum=BN_MOMENTUM))
            layers.append(ReLU())
            if p:
                layers.append(_fastnn_attr(fn, "Dropout")(p))
    kwargs = {"dtype": np.dtype(dtype).name, "seed": SEED}
    if kernels is not None:
        kwargs.update(kernels)
    model = Sequential(*layers, **kwargs)
    for lin, (W, b) in zip(linears, weights):
        lin.weight.data[...] = W
        lin.bias.data[...] = b
    return model


def _reference_kernel_kwargs():
    """How to ask the model layer for the fastnn.reference kernels, if it offers a way."""
    fn = _import_fastnn()
    Sequential = _fastnn_attr(fn, "Sequential")
    import inspect
    try:
        params = inspect.signature(Sequential).parameters
    except (TypeError, ValueError):
        params = {}
    for name in ("kernels", "backend", "ops"):
        if name in params:
            return {name: "reference"}
    raise Unavailable("the model layer offers no way to select the fastnn.reference kernels")


class FastnnTrain(Trial):
    def __init__(self, spec, ctx, kernels=None, threads=None, fit_kwargs=None):
        self.spec, self.ctx, self.threads = spec, ctx, threads
        self.kernels = kernels
        self.fit_kwargs = fit_kwargs or {}
        self.X, self.y, self.Xt, self.yt = ctx.problem.arrays(spec["dtype"])
        fastnn_model(spec, spec["dtype"], ctx.weights, kernels)   # fail early if unsupported
        if not hasattr(_fastnn_attr(_import_fastnn(), "Sequential"), "fit"):
            raise Unavailable("fastnn.Sequential.fit not available yet")

    def prepare(self, warm=False):
        self.model = fastnn_model(self.spec, self.spec["dtype"], self.ctx.weights, self.kernels)
        n = self.ctx.sizes.n_warmup if warm else len(self.X)
        self.Xr, self.yr = self.X[:n], self.y[:n]

    def run(self):
        self.model.fit(self.Xr, self.yr, epochs=1, batch_size=self.spec["batch"],
                       optimizer="adam", lr=LR, l2=self.spec.get("l2", 0.0), shuffle=True,
                       verbose=0, **self.fit_kwargs)

    def score(self):
        return _accuracy(self.model.predict(self.Xt), self.yt)


class FastnnPredict(Trial):
    def __init__(self, spec, ctx, kernels=None):
        self.model = fastnn_model(spec, spec["dtype"], ctx.weights, kernels)
        self.model.eval()
        self.x = ctx.predict_input(spec)

    def run(self):
        predict, x = self.model.predict, self.x
        for _ in range(self.calls):
            predict(x)

    def output(self):
        return np.asarray(self.model.predict(self.x))


def _fastnn_estimator(fn):
    cls = getattr(fn, "MLPClassifier", None)
    if cls is None:
        raise Unavailable("fastnn.MLPClassifier not available yet")
    return cls


# ---- PyTorch ---------------------------------------------------------------------------

def _import_torch():
    torch = _mod("torch")
    if torch is None:
        raise Unavailable("PyTorch not installed")
    return torch


def torch_model(spec, dtype, weights):
    torch = _import_torch()
    nn = torch.nn
    layers, linears = [], []
    last = len(weights) - 1
    for i, (n_in, n_out, bn, p) in enumerate(_layer_plan(spec)):
        linears.append(nn.Linear(n_in, n_out))
        layers.append(linears[-1])
        if i < last:
            if bn:
                layers.append(nn.BatchNorm1d(n_out, eps=BN_EPS, momentum=BN_MOMENTUM))
            layers.append(nn.ReLU())
            if p:
                layers.append(nn.Dropout(p))
    tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    model = nn.Sequential(*layers).to(tdtype)
    with torch.no_grad():
        for lin, (W, b) in zip(linears, weights):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b))
    return model, linears


class TorchTrain(Trial):
    """The idiomatic loop: randperm shuffle, index the batch, zero_grad, loss, backward, step."""

    def __init__(self, spec, ctx):
        self.torch = _import_torch()
        self.spec, self.ctx = spec, ctx
        X, y, Xt, yt = ctx.problem.arrays(spec["dtype"])
        self.X, self.y = self.torch.from_numpy(X), self.torch.from_numpy(y)
        self.Xt, self.yt = self.torch.from_numpy(Xt), yt
        self.gen = self.torch.Generator().manual_seed(SEED)
        l2 = spec.get("l2", 0.0)
        if l2:
            self.note = f"L2 as Adam weight_decay={2 * l2:g} on Linear weights only"

    def prepare(self, warm=False):
        torch = self.torch
        self.model, linears = torch_model(self.spec, self.spec["dtype"], self.ctx.weights)
        l2 = self.spec.get("l2", 0.0)
        if l2:
            # l2 * sum(w^2) adds 2 * l2 * w to the gradient of each Linear weight, which
            # is exactly Adam's (coupled) weight_decay=2*l2 on those tensors alone.
            decay = {id(lin.weight) for lin in linears}
            groups = [
                {"params": [p for p in self.model.parameters() if id(p) in decay],
                 "weight_decay": 2 * l2},
                {"params": [p for p in self.model.parameters() if id(p) not in decay],
                 "weight_decay": 0.0},
            ]
        else:
            groups = self.model.parameters()
        self.opt = torch.optim.Adam(groups, lr=LR, betas=BETAS, eps=ADAM_EPS)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.n = self.ctx.sizes.n_warmup if warm else len(self.X)

    def run(self):
        torch, model, opt, loss_fn = self.torch, self.model, self.opt, self.loss_fn
        X, y, n, batch = self.X, self.y, self.n, self.spec["batch"]
        model.train()
        perm = torch.randperm(n, generator=self.gen)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            opt.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()

    def score(self):
        self.model.eval()
        with self.torch.inference_mode():
            out = self.model(self.Xt).numpy()
        return _accuracy(out, self.yt)


class TorchPredict(Trial):
    note = "inference_mode, NumPy in and out"

    def __init__(self, spec, ctx):
        self.torch = _import_torch()
        self.model, _ = torch_model(spec, spec["dtype"], ctx.weights)
        self.model.eval()
        self.x = ctx.predict_input(spec)

    def run(self):
        torch, model, x = self.torch, self.model, self.x
        for _ in range(self.calls):
            with torch.inference_mode():
                model(torch.from_numpy(x)).numpy()

    def output(self):
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(self.x)).numpy()


# ---- scikit-learn ----------------------------------------------------------------------

def _import_sklearn_mlp():
    if _mod("sklearn") is None:
        raise Unavailable("scikit-learn not installed")
    from sklearn.neural_network import MLPClassifier
    return MLPClassifier


def exact_epochs(epochs):
    """Estimator parameters that make scikit-learn's adam run exactly `epochs` epochs.

    The solver stops early when the training loss has not improved by `tol` for more than
    `n_iter_no_change` consecutive epochs; with tol=0 and n_iter_no_change=epochs that
    count can reach at most epochs-1, so only max_iter ends the fit.
    """
    return {"max_iter": epochs, "tol": 0.0, "n_iter_no_change": max(1, epochs)}


class SklearnTrain(Trial):
    def __init__(self, spec, ctx):
        MLPClassifier = _import_sklearn_mlp()
        if spec.get("batch_norm") or spec.get("dropout"):
            raise Unavailable("scikit-learn's MLP has no BatchNorm or Dropout")
        self.spec, self.ctx = spec, ctx
        self.X, self.y, self.Xt, self.yt = ctx.problem.arrays(spec["dtype"])
        sizes = spec.get("sizes", ARCH)
        # scikit-learn adds alpha * w / batch to the gradient; fastnn's l2 adds 2 * l2 * w.
        alpha = 2 * spec.get("l2", 0.0) * spec["batch"]
        self.make = lambda: MLPClassifier(
            hidden_layer_sizes=sizes[1:-1], activation="relu", solver="adam", alpha=alpha,
            batch_size=spec["batch"], learning_rate_init=LR, beta_1=BETAS[0],
            beta_2=BETAS[1], epsilon=ADAM_EPS, shuffle=True, random_state=SEED,
            **exact_epochs(1))
        self.note = "own Glorot init; fit() incl. input checks"

    def prepare(self, warm=False):
        self.clf = self.make()
        n = self.ctx.sizes.n_warmup if warm else len(self.X)
        self.Xr, self.yr = self.X[:n], self.y[:n]

    def run(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.fit(self.Xr, self.yr)

    def score(self):
        return float(self.clf.score(self.Xt, self.yt))


class SklearnPredict(Trial):
    note = "predict_proba (includes softmax and input checks)"

    def __init__(self, spec, ctx):
        MLPClassifier = _import_sklearn_mlp()
        if spec.get("batch_norm") or spec.get("dropout"):
            raise Unavailable("scikit-learn's MLP has no BatchNorm or Dropout")
        dtype = np.dtype(spec["dtype"])
        X, y, _, _ = ctx.problem.arrays(dtype)
        sizes = spec.get("sizes", ARCH)
        clf = MLPClassifier(hidden_layer_sizes=sizes[1:-1], max_iter=1, random_state=SEED)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X[:200], np.arange(200) % sizes[-1])     # only to build the estimator
        clf.coefs_ = [W.astype(dtype) for W, _ in ctx.weights]
        clf.intercepts_ = [b.astype(dtype) for _, b in ctx.weights]
        self.clf, self.x = clf, ctx.predict_input(spec)

    def run(self):
        proba, x = self.clf.predict_proba, self.x
        for _ in range(self.calls):
            proba(x)

    def output(self):
        p = self.clf.predict_proba(self.x)
        return np.log(np.maximum(p, np.finfo(p.dtype).tiny))


# ---- hand-written NumPy ---------------------------------------------------------------

class NumpyMLP:
    """A careful NumPy MLP: ReLU, optional BatchNorm1d/Dropout, softmax cross-entropy, Adam.

    Parameters, gradients and Adam moments live in flat buffers (the update is a handful
    of whole-buffer operations), activation buffers are allocated once per batch size and
    reused, and every elementwise step writes in place (``out=``).
    Layer order per hidden layer: Linear -> [BatchNorm1d] -> ReLU -> [Dropout].
    """

    def __init__(self, weights, plan, dtype, l2=0.0, seed=SEED):
        self.dtype = np.dtype(dtype)
        self.plan, self.l2 = plan, l2
        self.rng = np.random.default_rng(seed)
        shapes = []
        for (W, b), (_, n_out, bn, _) in zip(weights, plan):
            shapes += [W.shape, b.shape] + ([(n_out,), (n_out,)] if bn else [])
        total = sum(int(np.prod(s)) for s in shapes)
        self.P = np.empty(total, self.dtype)
        self.G = np.zeros(total, self.dtype)
        self.M = np.zeros(total, self.dtype)
        self.V = np.zeros(total, self.dtype)
        self.T = np.empty(total, self.dtype)
        views, off = [], 0
        for s in shapes:
            size = int(np.prod(s))
            views.append((self.P[off:off + size].reshape(s), self.G[off:off + size].reshape(s)))
            off += size
        self.layers = []
        it = iter(views)
        for (W, b), (_, n_out, bn, p) in zip(weights, plan):
            layer = {"W": next(it), "b": next(it), "bn": bn, "p": p}
            layer["W"][0][...] = W
            layer["b"][0][...] = b
            if bn:
                layer["gamma"], layer["beta"] = next(it), next(it)
                layer["gamma"][0][...] = 1
                layer["beta"][0][...] = 0
                layer["rm"] = np.zeros(n_out, self.dtype)
                layer["rv"] = np.ones(n_out, self.dtype)
            self.layers.append(layer)
        self.t = 0
        self._bufs = {}

    def _buffers(self, n, n_in):
        key = n
        if key not in self._bufs:
            d = self.dtype
            bufs = {"x": np.empty((n, n_in), d), "y": np.empty(n, np.int64),
                    "rows": np.arange(n)}
            for i, layer in enumerate(self.layers):
                n_out = layer["W"][0].shape[1]
                bufs[i] = {"h": np.empty((n, n_out), d), "dh": np.empty((n, n_out), d),
                           "mask": np.empty((n, n_out), bool)}
                if layer["bn"]:
                    bufs[i].update(xhat=np.empty((n, n_out), d), tmp=np.empty((n, n_out), d))
                if layer["p"]:
                    bufs[i].update(u=np.empty((n, n_out), d), keep=np.empty((n, n_out), bool))
            self._bufs[key] = bufs
        return self._bufs[key]

    def train_step(self, x, y, bufs):
        """One Adam step on the batch (x, y); x and y are views of preallocated buffers."""
        m = x.shape[0]
        last = len(self.layers) - 1
        acts = [x]
        for i, layer in enumerate(self.layers):
            b = bufs[i]
            h = b["h"][:m]
            np.matmul(acts[-1], layer["W"][0], out=h)
            h += layer["b"][0]
            if i < last:
                if layer["bn"]:
                    xhat, tmp = b["xhat"][:m], b["tmp"][:m]
                    mean = h.mean(axis=0)
                    np.subtract(h, mean, out=xhat)
                    np.multiply(xhat, xhat, out=tmp)
                    var = tmp.mean(axis=0)
                    inv_std = 1.0 / np.sqrt(var + BN_EPS)
                    xhat *= inv_std
                    np.multiply(xhat, layer["gamma"][0], out=h)
                    h += layer["beta"][0]
                    layer["inv_std"] = inv_std
                    mom = BN_MOMENTUM
                    layer["rm"] *= 1 - mom
                    layer["rm"] += mom * mean
                    layer["rv"] *= 1 - mom
                    layer["rv"] += (mom * m / max(m - 1, 1)) * var
                np.maximum(h, 0, out=h)
                if layer["p"]:
                    u, keep = b["u"][:m], b["keep"][:m]
                    self.rng.random(dtype=u.dtype, out=u)
                    np.greater_equal(u, layer["p"], out=keep)
                    np.multiply(h, keep, out=h)
                    h *= 1.0 / (1.0 - layer["p"])
            acts.append(h)
        # softmax cross-entropy, in place on the logits
        z = acts[-1]
        z -= z.max(axis=1, keepdims=True)
        rows = bufs["rows"][:m]
        picked = z[rows, y]
        np.exp(z, out=z)
        s = z.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - picked))
        z /= s
        z[rows, y] -= 1
        z *= 1.0 / m
        delta = z
        for i in range(last, -1, -1):
            layer = self.layers[i]
            a_in = acts[i]
            np.matmul(a_in.T, delta, out=layer["W"][1])
            np.sum(delta, axis=0, out=layer["b"][1])
            if self.l2:
                w, gw = layer["W"]
                gw += (2 * self.l2) * w
            if i == 0:
                break                         # no input gradient for the first layer
            prev = self.layers[i - 1]
            pb = bufs[i - 1]
            dh = pb["dh"][:m]
            np.matmul(delta, layer["W"][0].T, out=dh)
            # gradient through Dropout then ReLU: a unit passes iff its output is > 0
            mask = pb["mask"][:m]
            np.greater(a_in, 0, out=mask)
            np.multiply(dh, mask, out=dh)
            if prev["p"]:
                dh *= 1.0 / (1.0 - prev["p"])
            if prev["bn"]:
                xhat, tmp = pb["xhat"][:m], pb["tmp"][:m]
                dbeta, dgamma = prev["beta"][1], prev["gamma"][1]
                np.sum(dh, axis=0, out=dbeta)
                np.multiply(dh, xhat, out=tmp)
                np.sum(tmp, axis=0, out=dgamma)
                np.multiply(xhat, dgamma, out=tmp)
                dh *= m
                dh -= dbeta
                dh -= tmp
                dh *= prev["gamma"][0] * prev["inv_std"] * (1.0 / m)
            delta = dh
        self._adam()
        return loss

    def _adam(self):
        """PyTorch's Adam on the flat buffers."""
        self.t += 1
        b1, b2 = BETAS
        P, G, M, V, T = self.P, self.G, self.M, self.V, self.T
        M *= b1
        np.multiply(G, 1 - b1, out=T)
        M += T
        V *= b2
        np.multiply(G, G, out=T)
        T *= 1 - b2
        V += T
        bc1 = 1 - b1 ** self.t
        bc2 = 1 - b2 ** self.t
        np.sqrt(V, out=T)
        T *= 1.0 / math.sqrt(bc2)
        T += ADAM_EPS
        np.divide(M, T, out=T)
        T *= LR / bc1
        P -= T

    def fit_epoch(self, X, y, batch):
        n = X.shape[0]
        bufs = self._buffers(min(batch, n), X.shape[1])
        perm = self.rng.permutation(n)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            m = idx.shape[0]
            xb, yb = bufs["x"][:m], bufs["y"][:m]
            np.take(X, idx, axis=0, out=xb)
            np.take(y, idx, out=yb)
            self.train_step(xb, yb, bufs)

    def predict(self, x):
        """Eval-mode forward pass (running statistics, no dropout) into cached buffers."""
        m = x.shape[0]
        key = ("eval", m)
        if key not in self._bufs:
            self._bufs[key] = [np.empty((m, layer["W"][0].shape[1]), self.dtype)
                               for layer in self.layers]
        outs = self._bufs[key]
        a = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = outs[i]
            np.matmul(a, layer["W"][0], out=h)
            h += layer["b"][0]
            if i < last:
                if layer["bn"]:
                    h -= layer["rm"]
                    h *= layer["gamma"][0] / np.sqrt(layer["rv"] + BN_EPS)
                    h += layer["beta"][0]
                np.maximum(h, 0, out=h)
            a = h
        return a.copy()


class NumpyTrain(Trial):
    def __init__(self, spec, ctx):
        self.spec, self.ctx = spec, ctx
        self.X, self.y, self.Xt, self.yt = ctx.problem.arrays(spec["dtype"])

    def prepare(self, warm=False):
        self.net = NumpyMLP(self.ctx.weights, _layer_plan(self.spec), self.spec["dtype"],
                            l2=self.spec.get("l2", 0.0))
        n = self.ctx.sizes.n_warmup if warm else len(self.X)
        self.Xr, self.yr = self.X[:n], self.y[:n]

    def run(self):
        self.net.fit_epoch(self.Xr, self.yr, self.spec["batch"])

    def score(self):
        return _accuracy(self.net.predict(self.Xt), self.yt)


class NumpyPredict(Trial):
    def __init__(self, spec, ctx):
        self.net = NumpyMLP(ctx.weights, _layer_plan(spec), spec["dtype"])
        self.x = ctx.predict_input(spec)

    def run(self):
        predict, x = self.net.predict, self.x
        for _ in range(self.calls):
            predict(x)

    def output(self):
        return self.net.predict(self.x)


# ---- GEMM floor ------------------------------------------------------------------------

class FloorTrain(Trial):
    """The 8 matrix products of a 3-layer MLP step alone, preallocated, numpy.matmul(out=).

    Forward x@W1, h1@W2, h2@W3; backward dW3 = h2.T@d3, d2 = d3@W3.T, dW2 = h1.T@d2,
    d1 = d2@W2.T, dW1 = x.T@d1 (no input gradient). Batches are contiguous slices of X.
    With scipy_blas=True the same products go to scipy's BLAS, the library fastnn's
    kernels call, which need not be NumPy's (another build or version of OpenBLAS).
    """

    def __init__(self, spec, ctx, threads=None, scipy_blas=False):
        self.spec, self.ctx, self.threads = spec, ctx, threads
        self.mm = _scipy_matmul(spec["dtype"]) if scipy_blas else np.matmul
        self.X = ctx.problem.arrays(spec["dtype"])[0]
        sizes = spec.get("sizes", ARCH)
        if len(sizes) != 4:
            raise Unavailable("the floor is written for two hidden layers")
        d = np.dtype(spec["dtype"])
        b = spec["batch"]
        self.W = [W.astype(d) for W, _ in ctx.weights]
        self.dW = [np.empty_like(W) for W in self.W]
        self.h = [np.empty((b, n), d) for n in sizes[1:]]
        self.dh = [np.empty((b, n), d) for n in sizes[1:-1]]

    def prepare(self, warm=False):
        self.n = self.ctx.sizes.n_warmup if warm else len(self.X)

    def run(self):
        X, n, batch = self.X, self.n, self.spec["batch"]
        W1, W2, W3 = self.W
        dW1, dW2, dW3 = self.dW
        H1, H2, H3 = self.h
        D1, D2 = self.dh
        mm = self.mm
        for start in range(0, n, batch):
            x = X[start:start + batch]
            m = x.shape[0]
            h1, h2, h3, d1, d2 = H1[:m], H2[:m], H3[:m], D1[:m], D2[:m]
            mm(x, W1, out=h1)
            mm(h1, W2, out=h2)
            mm(h2, W3, out=h3)
            mm(h2.T, h3, out=dW3)
            mm(h3, W3.T, out=d2)
            mm(h1.T, d2, out=dW2)
            mm(d2, W2.T, out=d1)
            mm(x.T, d1, out=dW1)


class EstimatorFloor(Trial):
    """The matrix products of an MLPClassifier fit alone: for every mini-batch of every
    epoch, one forward product per layer, then each layer's weight gradient and (but for
    the first layer) its input gradient, as FloorTrain does for the 3-layer MLP, into
    preallocated outputs, batches as contiguous slices. The estimator's layer sizes and
    batch size (scikit-learn's "auto": min(200, n)), one output per class (the workloads
    have more than two); random weights of X's dtype."""

    note = "the products of every batch alone"

    def __init__(self, params, data, per_epoch, ctx):
        self.ctx, self.per_epoch = ctx, per_epoch
        self.X, y = data[0], data[1]
        self.epochs = params["max_iter"]
        sizes = [self.X.shape[1], *params["hidden_layer_sizes"], len(np.unique(y))]
        batch = params.get("batch_size", "auto")
        self.batch = min(200, len(self.X)) if batch == "auto" else min(batch, len(self.X))
        d, rng = self.X.dtype, np.random.default_rng(SEED)
        self.W = [rng.uniform(-0.1, 0.1, (a, b)).astype(d) for a, b in zip(sizes, sizes[1:])]
        self.dW = [np.empty_like(W) for W in self.W]
        H = [np.empty((self.batch, n), d) for n in sizes[1:]]
        D = [np.empty((self.batch, n), d) for n in sizes[1:-1]]
        # each batch's operands, sliced once here rather than in the timed loop:
        # (layer inputs, layer outputs, output gradients; the last layer's output stands
        # in for its own gradient)
        self.batches = []
        for start in range(0, len(self.X), self.batch):
            x = self.X[start:start + self.batch]
            h = [a[:len(x)] for a in H]
            self.batches.append(([x] + h[:-1], h, [a[:len(x)] for a in D] + [h[-1]]))

    def prepare(self, warm=False):
        self.calls = self.epochs if self.per_epoch else 1
        self.run_epochs = 1 if warm else self.epochs

    def warm_scale(self):
        return float(self.epochs)

    def run(self):
        W, dW, mm = self.W, self.dW, np.matmul
        layers = range(len(W))
        backward = layers[::-1]
        for _ in range(self.run_epochs):
            for inputs, h, d in self.batches:
                for l in layers:
                    mm(inputs[l], W[l], out=h[l])
                for l in backward:
                    mm(inputs[l].T, d[l], out=dW[l])
                    if l:
                        mm(d[l], W[l].T, out=d[l - 1])


def _scipy_matmul(dtype):
    """matmul(a, b, out=c) for 2-D operands, through scipy.linalg.blas.

    A row-major array's transpose is a Fortran-order view of the same memory, so
    c = a @ b is computed as c.T = b.T @ a.T, written in place into c.T."""
    try:
        from scipy.linalg import blas
    except ImportError as exc:
        raise Unavailable(f"scipy is not installed ({exc})") from None
    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm

    def fortran_view(m):
        # m or m.T is C-contiguous: a view of it as a Fortran-order matrix, and whether
        # BLAS must transpose that view to get m.T
        return (m.T, False) if m.flags.c_contiguous else (m, True)

    def matmul(a, b, out):
        bt, trans_b = fortran_view(b)
        at, trans_a = fortran_view(a)
        gemm(1.0, bt, at, trans_a=trans_b, trans_b=trans_a, c=out.T, overwrite_c=True)
    return matmul


class FloorPredict(Trial):
    note = "the 3 forward products alone"

    def __init__(self, spec, ctx):
        d = np.dtype(spec["dtype"])
        self.W = [W.astype(d) for W, _ in ctx.weights]
        self.x = ctx.predict_input(spec)
        self.h = [np.empty((self.x.shape[0], W.shape[1]), d) for W in self.W]

    def run(self):
        x = self.x
        (W1, W2, W3), (h1, h2, h3) = self.W, self.h
        mm = np.matmul
        for _ in range(self.calls):
            mm(x, W1, out=h1)
            mm(h1, W2, out=h2)
            mm(h2, W3, out=h3)


# ---- estimators on data ------------------------------------------------------------------

class EstimatorFit(Trial):
    """MLPClassifier.fit (fastnn's or scikit-learn's) for an exact number of epochs."""

    def __init__(self, cls, params, data, per_epoch, ctx):
        self.cls, self.params, self.ctx = cls, params, ctx
        self.X, self.y, self.Xt, self.yt = data
        self.per_epoch = per_epoch
        self.epochs = params["max_iter"]
        self.cls(**params)                      # fail early on unknown parameters

    def prepare(self, warm=False):
        params = dict(self.params)
        if warm:
            params.update(exact_epochs(1))
        self.clf = self.cls(**params)
        self.calls = params["max_iter"] if self.per_epoch else 1

    def run(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.fit(self.X, self.y)

    def warm_scale(self):
        return float(self.epochs)                  # the warm-up fit runs one epoch

    def score(self):
        n_iter = getattr(self.clf, "n_iter_", None)
        if n_iter is not None and n_iter != self.epochs:
            raise RuntimeError(f"ran {n_iter} epochs instead of {self.epochs}")
        self.note = f"{self.epochs} epochs (n_iter_={n_iter})"
        return float(np.mean(self.clf.predict(self.Xt) == self.yt))


# --------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------

def _per_layer(spec, ctx):
    """fastnn made to go layer by layer from Python (fit(compiled=False)), where offered."""
    import inspect
    Sequential = _fastnn_attr(_import_fastnn(), "Sequential")
    if "compiled" not in inspect.signature(Sequential.fit).parameters:
        raise Unavailable("Sequential.fit has no compiled= switch")
    return FastnnTrain(spec, ctx, fit_kwargs={"compiled": False})


def _train_contenders(per_layer=False):
    return [
        (FASTNN, lambda s, ctx: FastnnTrain(s, ctx)),
    ] + ([(PER_LAYER, _per_layer)] if per_layer else []) + [
        (REFERENCE, lambda s, ctx: FastnnTrain(s, ctx, kernels=_reference_kernel_kwargs())),
        (TORCH, TorchTrain),
        (SKLEARN, SklearnTrain),
        (NUMPY, NumpyTrain),
        (FLOOR, lambda s, ctx: FloorTrain(s, ctx)),
        (SCIPY_FLOOR, lambda s, ctx: FloorTrain(s, ctx, scipy_blas=True)),
    ]


def _predict_contenders():
    return [
        (FASTNN, lambda s, ctx: FastnnPredict(s, ctx)),
        (REFERENCE, lambda s, ctx: FastnnPredict(s, ctx, kernels=_reference_kernel_kwargs())),
        (TORCH, TorchPredict),
        (SKLEARN, SklearnPredict),
        (NUMPY, NumpyPredict),
        (FLOOR, FloorPredict),
    ]


def _estimator_contenders(data_of, epochs_attr):
    """fastnn's and scikit-learn's MLPClassifier fit on data_of(ctx) for the number of
    epochs ctx.sizes gives as epochs_attr, and the products of that fit alone."""
    def make(which):
        def factory(spec, ctx):
            data = data_of(ctx)
            epochs = getattr(ctx.sizes, epochs_attr)
            params = dict(spec["params"], random_state=SEED, **exact_epochs(epochs))
            if which == FLOOR:
                return EstimatorFloor(params, data, spec["per_epoch"], ctx)
            cls = (_fastnn_estimator(_import_fastnn()) if which == FASTNN
                   else _import_sklearn_mlp())
            return EstimatorFit(cls, params, data, spec["per_epoch"], ctx)
        return factory
    return [(FASTNN, make(FASTNN)), (SKLEARN, make(SKLEARN)), (FLOOR, make(FLOOR))]


def _synthetic_data(ctx):
    p = ctx.problem
    return p.X, p.y, p.X_test, p.y_test


def _thread_contenders():
    def one(cls):
        def factory(spec, ctx):
            if ctx.threads < 2:
                raise Unavailable(f"needs at least 2 threads (running with {ctx.threads})")
            return cls(spec, ctx, threads=1)
        return factory

    def many(cls):
        def factory(spec, ctx):
            if ctx.threads < 2:
                raise Unavailable(f"needs at least 2 threads (running with {ctx.threads})")
            return cls(spec, ctx)
        return factory
    return [(FASTNN, many(FastnnTrain)), ("fastnn 1 thread", one(FastnnTrain)),
            (FLOOR, many(FloorTrain)), ("GEMM floor 1 thread", one(FloorTrain))]


def _train_spec(batch, **extra):
    return dict({"kind": "train", "batch": batch, "dtype": "float32"}, **extra)


WORKLOADS = {
    "mlp-b32": (_train_spec(32), _train_contenders(per_layer=True),
                "MLP 784-256-128-10 ReLU, Adam, one epoch, batch 32"),
    "mlp-b128": (_train_spec(128), _train_contenders(), "same, batch 128"),
    "mlp-b512": (_train_spec(512), _train_contenders(), "same, batch 512"),
    "mlp-bn-b128": (_train_spec(128, batch_norm=True, dropout=0.2, l2=1e-4),
                    _train_contenders(),
                    "same + BatchNorm1d + Dropout(0.2) + L2 1e-4, batch 128"),
    "mlp-f64-b128": (_train_spec(128, dtype="float64"), _train_contenders(),
                     "same in float64, batch 128"),
    "predict-1": ({"kind": "predict", "rows": 1, "dtype": "float32"}, _predict_contenders(),
                  "predict, 1 row (eval mode), per call"),
    "predict-256": ({"kind": "predict", "rows": 256, "dtype": "float32"},
                    _predict_contenders(), "predict, 256 rows (eval mode), per call"),
    "digits-epoch": ({"kind": "estimator", "per_epoch": True,
                      "params": {"hidden_layer_sizes": (100,)}},
                     _estimator_contenders(lambda ctx: ctx.digits(), "digits_epochs"),
                     "MLPClassifier(hidden_layer_sizes=(100,)) on digits, time per epoch"),
    "mlpclf-fit": ({"kind": "estimator", "per_epoch": False,
                    "params": {"hidden_layer_sizes": (256, 128), "batch_size": 128,
                               "learning_rate_init": LR, "alpha": 1e-4}},
                   _estimator_contenders(_synthetic_data, "fit_epochs"),
                   "MLPClassifier((256, 128), batch 128, alpha 1e-4).fit on the synthetic set"),
    "threads-b512": (_train_spec(512), _thread_contenders(),
                     "fastnn batch-512 epoch, all threads vs 1 thread"),
}


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------

class Context:
    def __init__(self, sizes, threads):
        self.sizes, self.threads = sizes, threads
        self.weights = init_weights()
        self._problem = None
        self._digits = None

    @property
    def problem(self):
        if self._problem is None:
            self._problem = Problem(self.sizes.n_train, self.sizes.n_test)
        return self._problem

    def digits(self):
        if self._digits is None:
            self._digits = load_digits_split()
        return self._digits

    def predict_input(self, spec):
        X = self.problem.arrays(spec["dtype"])[2]
        return np.ascontiguousarray(X[:spec["rows"]])


def _reason(exc):
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    if isinstance(exc, Unavailable):
        return text
    name = type(exc).__name__
    return f"{name}: {text}"[:160] if text else name


class Result:
    def __init__(self, workload, contender, unit):
        self.workload, self.contender, self.unit = workload, contender, unit
        self.times, self.accuracies = [], []
        self.reason = None
        self.note = ""
        self.trial = None
        self.max_abs_diff = None
        self.others_cpu = None

    @property
    def ok(self):
        return self.reason is None and bool(self.times)

    @property
    def median(self):
        return statistics.median(self.times) if self.ok else None

    def accuracy(self):
        acc = [a for a in self.accuracies if a is not None]
        return statistics.median(acc) if acc else None

    def as_dict(self):
        return {"workload": self.workload, "contender": self.contender, "unit": self.unit,
                "status": "ok" if self.ok else "n/a", "reason": self.reason,
                "times": self.times, "median": self.median,
                "min": min(self.times) if self.ok else None,
                "max": max(self.times) if self.ok else None,
                "accuracy": self.accuracy(), "accuracies": self.accuracies,
                "max_abs_diff_vs_numpy": self.max_abs_diff, "note": self.note,
                "other_processes_cpu_share": self.others_cpu}


def run_workload(name, ctx, contender_filter=None, log=None):
    spec, contenders, _ = WORKLOADS[name]
    unit = "s/call" if spec["kind"] == "predict" else (
        "s/epoch" if spec.get("per_epoch") or spec["kind"] == "train" else "s/fit")
    meter = CpuMeter()
    results = []
    for cname, factory in contenders:
        if contender_filter and not _matches(cname, contender_filter):
            continue
        res = Result(name, cname, unit)
        results.append(res)
        try:
            res.trial = factory(spec, ctx)
        except Exception as exc:
            res.reason = _reason(exc)
    live = [r for r in results if r.trial is not None]
    reps = ctx.sizes.fit_reps if spec["kind"] == "estimator" else ctx.sizes.reps
    estimate = 0.0           # seconds one interleaved repetition will take, from the warm-up

    def attempt(res, fn):
        try:
            return fn()
        except Exception as exc:
            res.reason = _reason(exc)
            res.trial = None
            return None

    for res in live:                                  # warm-up
        trial = res.trial
        with thread_limit(trial.threads or ctx.threads):
            attempt(res, lambda: trial.prepare(warm=True))
            if res.trial is None:
                continue
            if spec["kind"] == "predict":
                attempt(res, lambda: _calibrate(trial, ctx.sizes.predict_budget))
                estimate += ctx.sizes.predict_budget
            else:
                t0 = time.perf_counter()
                attempt(res, trial.run)
                estimate += (time.perf_counter() - t0) * trial.warm_scale()
    if estimate * reps > ctx.sizes.workload_budget:
        reps = max(min(reps, ctx.sizes.min_reps),
                   int(ctx.sizes.workload_budget // max(estimate, 1e-9)))
    # A collection before each timed run keeps the collector out of it. A full pass over
    # every object, PyTorch's and scikit-learn's included, took about 0.1 s, 16 s of a
    # --quick run: so the objects that exist now are collected once and frozen (left out
    # of later passes), and each repetition's pass covers only what it made since.
    gc.collect()
    gc.freeze()
    try:
        for rep in range(reps):                       # interleaved, rotating order
            live = [r for r in results if r.trial is not None]
            if not live:
                break
            k = rep % len(live)
            for res in live[k:] + live[:k]:
                trial = res.trial
                with thread_limit(trial.threads or ctx.threads):
                    attempt(res, trial.prepare)
                    if res.trial is None:
                        continue
                    gc.collect()
                    time.sleep(ctx.sizes.settle)
                    t0 = time.perf_counter()
                    attempt(res, trial.run)
                    elapsed = time.perf_counter() - t0
                    if res.trial is None:
                        continue
                    acc = attempt(res, trial.score)
                    if res.trial is None:
                        continue
                res.times.append(elapsed / trial.calls)
                res.accuracies.append(acc)
                if log:
                    log(f"  {name:14s} {res.contender:22s} rep {rep + 1}/{reps}: "
                        f"{_fmt_time(elapsed / trial.calls, unit)}")
    finally:
        gc.unfreeze()          # this workload's objects may be collected again
    if spec["kind"] == "predict":
        _compare_outputs(results)
    share = meter.others_share()
    for res in results:
        if res.trial is not None:
            res.note = res.trial.note
        res.trial = None
        res.others_cpu = share
    return results


def _calibrate(trial, budget):
    """Choose the number of calls per timed run so one run lasts about `budget` seconds."""
    trial.calls = 1
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < budget / 4 or n < 3:
        trial.run()
        n += 1
    per_call = (time.perf_counter() - t0) / n
    trial.calls = max(1, int(budget / max(per_call, 1e-9)))


def _compare_outputs(results):
    """Predict rows: the largest difference of each contender's output from NumPy's."""
    base = next((r for r in results if r.contender == NUMPY and r.trial is not None), None)
    if base is None:
        return
    ref = _log_softmax(base.trial.output())
    for res in results:
        out = getattr(res.trial, "output", None)
        if out is not None and res is not base:
            try:
                res.max_abs_diff = float(np.max(np.abs(_log_softmax(out()) - ref)))
            except Exception:
                pass


def _log_softmax(z):
    """Outputs compared as log-probabilities (scikit-learn returns probabilities)."""
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _matches(name, patterns):
    return any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)


def select_workloads(only):
    """The workloads --only names (all without it); ValueError for a pattern that
    matches none, or for an --only that names nothing."""
    if only is None:
        return list(WORKLOADS)
    patterns = [p.strip() for item in only for p in item.split(",") if p.strip()]
    if not patterns:
        raise ValueError("--only names no workload")
    chosen = [w for w in WORKLOADS if _matches(w, patterns)]
    unknown = [p for p in patterns if not any(_matches(w, [p]) for w in WORKLOADS)]
    if unknown:
        raise ValueError(f"unknown workload(s): {', '.join(unknown)}; "
                         f"choose from {', '.join(WORKLOADS)}")
    return chosen


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------

def _fmt_time(t, unit):
    if t is None:
        return "n/a"
    if unit == "s/call":
        return f"{t * 1e6:.1f} µs"
    if t < 0.1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.3f} s"


def _fmt_spread(res):
    if not res.ok:
        return "n/a"
    lo, hi, n = min(res.times), max(res.times), len(res.times)
    if res.unit == "s/call":
        return f"{lo * 1e6:.1f}-{hi * 1e6:.1f} µs (n={n})"
    if hi < 0.1:
        return f"{lo * 1e3:.2f}-{hi * 1e3:.2f} ms (n={n})"
    return f"{lo:.3f}-{hi:.3f} s (n={n})"


def _ratio(a, b):
    return a / b if a is not None and b else None


def _fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def annotate(results):
    """Add ratio_to_fastnn and ratio_to_floor to each result of one workload."""
    by = {r.contender: r for r in results}
    fast = by.get(FASTNN)
    floor = by.get(FLOOR)
    for r in results:
        r.ratio_to_fastnn = _ratio(r.median, fast.median if fast else None)
        r.ratio_to_floor = _ratio(r.median, floor.median if floor else None)


def markdown_table(all_results):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for results in all_results:
        for r in results:
            acc = r.accuracy()
            note = r.note
            if r.max_abs_diff is not None:
                note = ((note + "; " if note else "")
                    + f"log-softmax within {r.max_abs_diff:.1e} of NumPy's")
            if not r.ok:
                note = f"n/a: {r.reason or 'no run completed'}"
            cells = [r.workload, r.contender, _fmt_time(r.median, r.unit), _fmt_spread(r),
                     _fmt_ratio(r.ratio_to_fastnn), _fmt_ratio(r.ratio_to_floor),
                     "—" if acc is None else f"{acc:.3f}", note.replace("|", "/")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# (workload, contender, what is compared, comparison, bound, needs equal accuracy)
TARGETS = [
    ("mlp-b32", TORCH, "fastnn / PyTorch", "<=", 0.4, False),
    ("mlp-b32", NUMPY, "fastnn / NumPy", "<", 1.0, False),
    ("mlp-b128", TORCH, "fastnn / PyTorch", "<=", 0.6, False),
    ("mlp-b128", NUMPY, "fastnn / NumPy", "<", 1.0, False),
    ("mlp-b128", FLOOR, "fastnn / GEMM floor", "<=", 1.3, False),
    ("mlp-b512", TORCH, "fastnn / PyTorch", "<=", 0.8, False),
    ("mlp-b512", NUMPY, "fastnn / NumPy", "<", 1.0, False),
    ("mlp-b512", FLOOR, "fastnn / GEMM floor", "<=", 1.3, False),
    ("mlp-bn-b128", TORCH, "fastnn / PyTorch", "<=", 0.5, False),
    ("mlp-f64-b128", TORCH, "fastnn / PyTorch (float64)", "<=", 0.6, False),
    ("predict-1", TORCH, "fastnn / PyTorch", "<=", 0.3, False),
    ("predict-256", TORCH, "fastnn / PyTorch", "<=", 1.0, False),
    ("mlpclf-fit", SKLEARN, "fastnn / scikit-learn fit", "<=", 1 / 3, True),
    ("digits-epoch", SKLEARN, "fastnn / scikit-learn per epoch", "<=", 0.2, True),
    ("threads-b512", "fastnn 1 thread", "fastnn N threads / 1 thread", "<=", 1 / 1.6, False),
]
ACCURACY_SLACK = 0.01   # "equal accuracy": fastnn's test accuracy at most 1 point lower


def evaluate_targets(all_results):
    by = {(r.workload, r.contender): r for results in all_results for r in results}
    rows = []
    for wl, other, label, op, bound, need_acc in TARGETS:
        if wl not in {r.workload for results in all_results for r in results}:
            continue
        fast, oth = by.get((wl, FASTNN)), by.get((wl, other))
        ratio = _ratio(fast.median if fast else None, oth.median if oth else None)
        met = None
        details = []
        if ratio is not None:
            met = ratio <= bound if op == "<=" else ratio < bound
            if need_acc:
                fa, oa = fast.accuracy(), oth.accuracy()
                if fa is not None and oa is not None:
                    details.append(f"accuracy {fa:.3f} vs {oa:.3f}")
                    met = met and fa >= oa - ACCURACY_SLACK
        # the time the target allows fastnn, in GEMM floors of the same run: below 1, no
        # implementation on NumPy's BLAS can meet it
        floor = by.get((wl, FLOOR))
        allowed = None
        if other != FLOOR and oth is not None and oth.ok and floor is not None and floor.ok:
            allowed = _ratio(bound * oth.median, floor.median)
            details.append(f"target = {allowed:.2f}x GEMM floor")
        rows.append({"workload": wl, "compared": label, "target": f"{op} {bound:.2f}x",
                     "measured": ratio, "met": met, "detail": "; ".join(details),
                     "target_over_floor": allowed, "per_round": round_ratios(fast, oth)})
    return rows


def round_ratios(fast, other):
    """fastnn's time over the other's in each interleaved round where both ran.

    The verdict stays the ratio of the medians; these show how far the ratio itself moves
    from round to round, where both contenders met the same machine within seconds.
    """
    if not (fast and other and fast.ok and other.ok):
        return []
    # a contender that fails stops there, so times[i] of each is round i
    return [f / o for f, o in zip(fast.times, other.times) if o > 0]


def _fmt_round_ratios(ratios):
    if not ratios:
        return "n/a"
    return (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}, "
            f"n={len(ratios)})")


def targets_table(rows):
    lines = ["| workload | ratio | target | measured | met | per round: median (min-max) | |",
             "|---|---|---|---|---|---|---|"]
    for t in rows:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        per_round = _fmt_round_ratios(t["per_round"])
        lines.append(f"| {t['workload']} | {t['compared']} | {t['target']} | "
                     f"{_fmt_ratio(t['measured'])} | {met} | {per_round} | {t['detail']} |")
    return "\n".join(lines)


BUSY_SHARE = 0.05   # other processes above this share of the cores make timings unreliable


def busy_report(all_results, cores):
    """A line naming the workloads during which other processes used the CPUs."""
    shares = [(results[0].workload, results[0].others_cpu) for results in all_results
              if results and results[0].others_cpu is not None]
    if not shares:
        return None
    busy = [f"{wl} {100 * sh:.0f}%" for wl, sh in shares if sh > BUSY_SHARE]
    if not busy:
        return (f"Other processes used at most {100 * max(sh for _, sh in shares):.0f}% of "
                f"the {cores} cores during any workload: a quiet machine.")
    return ("WARNING: other processes used a share of the cores during: " + ", ".join(busy)
            + ". With several threads, every synchronisation then waits for a descheduled "
            "thread and timings can be inflated many times; rerun those workloads on a "
            "quiet machine (or compare with --threads 1).")


def time_split(all_results):
    """GEMM-vs-rest for fastnn at batch 32, from the table's own medians."""
    by = {(r.workload, r.contender): r for results in all_results for r in results}
    fast, floor = by.get(("mlp-b32", FASTNN)), by.get(("mlp-b32", FLOOR))
    if not (fast and floor and fast.ok and floor.ok):
        return None
    return (f"fastnn batch 32: {fast.median:.3f} s per epoch, of which the GEMM floor is "
            f"{floor.median:.3f} s ({100 * floor.median / fast.median:.0f}%); the rest, "
            f"{fast.median - floor.median:.3f} s, is everything outside the 8 matrix "
            f"products (see --profile).")


# environment variables that change how thread pools behave, reported in the header
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND",
              "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "MKL_NUM_THREADS",
              "KMP_BLOCKTIME")


def load_average():
    """The 1-minute load average, or None where the OS does not report it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info(threads):
    info = {"load_average_at_start": load_average(), "python": platform.python_version(), "platform": platform.platform(),
            "numpy": np.__version__, "threads": threads, "cores": usable_cores(),
            "cpu": "unknown", "isa": []}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), [])
        info["isa"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                       if f in flags]
    except OSError:
        info["cpu"] = platform.processor() or "unknown"
    tpc = _mod("threadpoolctl")
    if tpc is not None:
        info["threadpools"] = [
            {k: v for k, v in p.items() if k != "filepath"}
            | {"library": os.path.join(*os.path.normpath(p.get("filepath", "?")).split(os.sep)[-2:])}
            for p in tpc.threadpool_info()]
        blas = [p for p in info["threadpools"] if p.get("user_api") == "blas"]
        # numpy's own BLAS first; others in the process (scipy's, which fastnn's kernels
        # call through scipy.linalg.cython_blas) after it
        blas.sort(key=lambda p: not p["library"].startswith("numpy"))
        if blas:
            info["blas"] = "; ".join(
                f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                f"{b.get('threading_layer')}, {b['library']})" for b in blas)
    if "blas" not in info:
        try:
            cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            info["blas"] = f"{cfg.get('name')} {cfg.get('version')} (numpy build config)"
        except Exception:
            info["blas"] = "unknown"
    info["env"] = {k: os.environ[k] for k in THREAD_ENV if k in os.environ}
    for name in ("torch", "sklearn", "fastnn", "threadpoolctl"):
        mod = _mod(name)
        if mod is not None:
            info[name] = getattr(mod, "__version__", "installed")
        else:           # "not loaded": installed, but left out by --contenders
            info[name] = ("not loaded" if importlib.util.find_spec(name) is not None
                          else "not installed")
    info["fastnn_training"] = "n/a"
    if _mod("fastnn") is not None:
        try:
            from fastnn._kernels import training_module
            info["fastnn_training"] = training_module().__name__.rsplit(".", 1)[-1]
        except Exception:        # a fastnn without it
            pass
    return info


def header(info, sizes):
    lines = [
        f"CPU: {info['cpu']} ({', '.join(info['isa']) or 'no AVX2'}); cores available: "
        f"{info['cores']}; threads used: {info['threads']} for every library",
        f"BLAS (numpy's first): {info['blas']}; thread limits via threadpoolctl: "
        f"{'yes' if info['threadpoolctl'] != 'not installed' else 'no (not installed)'}",
        f"versions: Python {info['python']}, numpy {info['numpy']}, fastnn {info['fastnn']} "
        f"(training step: {info['fastnn_training']}), PyTorch {info['torch']}, "
        f"scikit-learn {info['sklearn']}",
        f"sizes: {sizes.mode}; {sizes.n_train} training / {sizes.n_test} test samples; "
        f"{sizes.reps} repetitions (estimator fits: {sizes.fit_reps}; fewer, down to "
        f"{sizes.min_reps}, where a workload would exceed {sizes.workload_budget:g} s) after "
        f"a warm-up, interleaved; median and min-max; accuracy = test accuracy after the run",
        "time / fastnn = contender time / fastnn time (above 1: fastnn is faster); "
        "time / GEMM floor likewise",
    ]
    if info.get("env"):
        lines.append("thread environment: " + ", ".join(f"{k}={v}" for k, v in
                                                         info["env"].items()))
    load = info.get("load_average_at_start")
    if load is not None:
        # the 1-minute load average lags (a previous run still shows in it); the share of
        # the CPUs other processes took during each workload is reported after the table
        lines.append(f"load average at start: {load:.2f} (1 minute; other processes' CPU "
                     f"share during the run is measured below the table)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Profile mode
# --------------------------------------------------------------------------------------

def profile(ctx, log=print, top=15):
    """Where fastnn's time goes at batch 32: cProfile, and GEMM floor vs the full epoch."""
    spec = _train_spec(32)
    out = {"target": FASTNN}
    floor = FloorTrain(spec, ctx)
    n_batches = math.ceil(ctx.sizes.n_train / spec["batch"])
    with thread_limit(ctx.threads):
        try:
            trial = FastnnTrain(spec, ctx)
            trial.prepare(warm=True)
            trial.run()
        except Exception as exc:
            out.update(target=NUMPY, fastnn_reason=_reason(exc))
            log(f"fastnn n/a ({_reason(exc)}); profiling the hand-written NumPy MLP "
                "instead.\n")
            trial = NumpyTrain(spec, ctx)
            trial.prepare(warm=True)
            trial.run()
        floor.prepare(warm=True)
        floor.run()
        trial.prepare()
        prof = cProfile.Profile()
        prof.enable()
        trial.run()
        prof.disable()
        times = {"full": [], "floor": []}
        for _ in range(max(1, min(ctx.sizes.reps, 3))):
            for key, t in (("full", trial), ("floor", floor)):
                t.prepare()
                gc.collect()
                t0 = time.perf_counter()
                t.run()
                times[key].append(time.perf_counter() - t0)
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    full, fl = statistics.median(times["full"]), statistics.median(times["floor"])
    n_calls = sum(v[1] for v in stats.stats.values())
    out.update(epoch_s=full, floor_s=fl, rest_s=full - fl, n_batches=n_batches,
               python_calls_per_batch=n_calls / n_batches,
               top=[{"function": f"{k[0]}:{k[1]}({k[2]})", "calls": v[1],
                     "tottime": v[2], "cumtime": v[3]}
                    for k, v in sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]])
    label = out["target"]
    log(f"## Profile: {label}, MLP 784-256-128-10, batch 32, {ctx.sizes.n_train} samples, "
        f"{ctx.threads} thread(s)\n")
    log(f"- epoch: {full:.3f} s (median of {len(times['full'])}); GEMM floor {fl:.3f} s "
        f"= {100 * fl / full:.0f}% of it; the rest {full - fl:.3f} s "
        f"= {1e6 * (full - fl) / n_batches:.1f} µs per batch ({n_batches} batches)")
    log(f"- profiled function calls per batch: {n_calls / n_batches:.1f} "
        f"(a compiled epoch shows a handful per epoch, not per batch)\n")
    log("cProfile, top entries by own time (Cython kernels and numpy ufuncs are not listed "
        "by cProfile: their time counts as the own time of the Python function that "
        "calls them):\n```")
    log("\n".join(line for line in stream.getvalue().strip().splitlines()))
    log("```")
    return out


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m fastnn bench",
        description="Speed comparison of fastnn with PyTorch, scikit-learn, hand-written "
                    "NumPy and the GEMM floor on this machine.")
    p.add_argument("--quick", action="store_true",
                   help="smaller sample counts and fewer repetitions (under a minute)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny sizes for smoke tests (seconds; timings meaningless)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="workloads to run (comma-separated, shell-style patterns, "
                        "repeatable), e.g. --only 'mlp-b*,predict-1'")
    p.add_argument("--contenders", metavar="NAMES",
                   help="contenders to run (comma-separated patterns), e.g. 'fastnn,PyTorch'")
    p.add_argument("--threads", type=int_in_range(1, MAX_THREADS), default=None,
                   help="threads for every library (default: all available cores)")
    p.add_argument("--samples", type=int_in_range(2), default=None,
                   help="training samples (default 60000; --quick 4000)")
    p.add_argument("--reps", type=int_in_range(1), default=None,
                   help="timed repetitions per contender")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--profile", action="store_true",
                   help="profile fastnn's batch-32 epoch instead of running the table")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="print every timing")
    return p


def _all_contenders():
    return {name for _spec, contenders, _title in WORKLOADS.values()
            for name, _factory in contenders}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = select_workloads(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    contender_filter = ([c.strip() for c in args.contenders.split(",") if c.strip()]
                        if args.contenders is not None else None)
    if contender_filter is not None:
        unknown = [c for c in contender_filter if not any(_matches(name, [c])
                                                         for name in _all_contenders())]
        if unknown or not contender_filter:
            parser.error(f"--contenders: no contender matches {', '.join(unknown) or '(none)'}"
                         f"; choose from {', '.join(sorted(_all_contenders()))}")
    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            parser.error(f"--json: cannot write into {directory!r}")
    if args.list:
        for name, (_, contenders, title) in WORKLOADS.items():
            print(f"{name:14s} {title}  [{', '.join(c for c, _ in contenders)}]")
        return 0
    started = time.perf_counter()
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    sizes = Sizes(mode, samples=args.samples, reps=args.reps)
    threads = args.threads if args.threads is not None else usable_cores()
    _preload(contender_filter)
    ctx = Context(sizes, threads)
    info = machine_info(threads)
    report = {"machine": info, "sizes": sizes.as_dict(), "argv": list(argv or sys.argv[1:])}

    if args.profile:
        print(header(info, sizes), end="\n\n", flush=True)
        report["profile"] = profile(ctx)
    else:
        all_results = []
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.verbose else None
        for name in names:
            if not args.verbose:
                print(f"running {name} ...", file=sys.stderr, flush=True)
            results = run_workload(name, ctx, contender_filter, log)
            annotate(results)
            all_results.append(results)
        targets = evaluate_targets(all_results)
        split = time_split(all_results)
        elapsed = time.perf_counter() - started
        print(header(info, sizes))
        print()
        for name in names:
            print(f"- {name}: {WORKLOADS[name][2]}")
        print()
        print(markdown_table(all_results))
        if targets:
            print("\nTargets from issue 5 (ratio = fastnn time / other time):\n")
            print(targets_table(targets))
        if split:
            print("\n" + split)
        busy = busy_report(all_results, os.cpu_count() or 1)
        if busy:
            print("\n" + busy)
        report["busy"] = busy
        print(f"\nbench wall time: {elapsed:.1f} s")
        report["results"] = [r.as_dict() | {"ratio_to_fastnn": r.ratio_to_fastnn,
                                            "ratio_to_floor": r.ratio_to_floor}
                             for results in all_results for r in results]
        report["targets"] = targets
        report["time_split"] = split
    report["elapsed_s"] = time.perf_counter() - started
    report["load_average_at_end"] = load_average()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=_json_default)
            f.write("\n")
    return 0


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
