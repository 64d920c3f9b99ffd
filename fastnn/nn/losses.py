"""Loss functions: ``loss(outputs, targets) -> float``, then ``loss.backward()`` returns
d loss / d outputs.

Reductions are PyTorch's defaults (``reduction="mean"``): cross-entropy averages over rows,
MSE and BCE-with-logits over every element.
"""
import numpy as np

from fastnn._validation import as_numeric, check_finite, class_labels
from fastnn.nn import _fused
from fastnn.nn.layers import resolve_kernels

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "get_loss"]


class Loss:
    """Base class. Subclasses implement ``forward(outputs, targets) -> (loss, grad)`` and
    ``prepare_targets(y, n_outputs, dtype, name)`` (validation and conversion for ``fit``)."""

    def __init__(self):
        self._grad = None
        self._kernels = None

    @property
    def kernels(self):
        return self._kernels if self._kernels is not None else resolve_kernels(None)

    @kernels.setter
    def kernels(self, value):
        self._kernels = None if value is None else resolve_kernels(value)

    def __call__(self, outputs, targets):
        self._grad = None           # a failed call leaves no earlier gradient to backward
        loss, self._grad = self.forward(outputs, targets)
        return loss

    def backward(self):
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before the loss")
        return self._grad

    def forward(self, outputs, targets):
        raise NotImplementedError

    def prepare_targets(self, y, n_outputs, dtype, name="y"):
        """y checked against the model's output width and converted (``fit`` calls this)."""
        y = as_numeric(y, name)
        check_finite(y, name)
        return y

    @staticmethod
    def _outputs(outputs):
        outputs = as_numeric(outputs, "outputs")
        if outputs.dtype not in (np.float32, np.float64):
            outputs = outputs.astype(np.float32 if outputs.dtype == np.float16 else np.float64)
        if outputs.ndim != 2:
            raise ValueError(f"outputs must be a 2-D (n, k) array, got shape {outputs.shape}")
        if outputs.shape[0] == 0:
            raise ValueError("outputs are empty (0 rows)")
        return outputs

    def __repr__(self):
        return f"{type(self).__name__}()"


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits (n, k), averaged over rows, as ``torch.nn.CrossEntropyLoss``.

    targets: (n,) integer class indices, or (n, k) class probabilities (one-hot included).
    ``label_smoothing`` = eps replaces the target distribution t by (1 - eps) * t + eps / k,
    exactly as PyTorch does for both kinds of targets.
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        ls = float(label_smoothing)
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = ls

    def forward(self, outputs, targets):
        z = np.ascontiguousarray(self._outputs(outputs))
        k = z.shape[1]
        targets = np.asarray(targets)
        eps = self.label_smoothing
        if targets.ndim == 1:
            if not eps:
                return self.kernels.cross_entropy(z, targets)
            if targets.shape[0] != z.shape[0]:
                raise ValueError(f"{targets.shape[0]} labels for {z.shape[0]} rows of outputs")
            labels = class_labels(targets, k, "targets")
            return _fused.cross_entropy_smoothed(self.kernels, z, labels, eps)
        if targets.dtype != z.dtype:
            targets = as_numeric(targets, "targets").astype(z.dtype)
        if eps:
            if targets.shape != z.shape:
                raise ValueError(f"targets of shape {targets.shape} do not match outputs "
                                 f"of shape {z.shape}")
            targets = targets * (1.0 - eps) + eps / k
        return self.kernels.cross_entropy(z, targets)

    def prepare_targets(self, y, n_outputs, dtype, name="y"):
        y = as_numeric(y, name)
        if y.ndim == 2 and y.shape[1] == 1 and n_outputs != 1:
            y = y[:, 0]
        if y.ndim == 1:
            if n_outputs is None:
                return class_labels(y, np.iinfo(np.int64).max, name)
            return class_labels(y, n_outputs, f"{name} (class labels for the model's "
                                              f"{n_outputs} outputs)")
        if y.ndim == 2:
            if n_outputs is not None and y.shape[1] != n_outputs:
                raise ValueError(f"{name} has {y.shape[1]} columns (class probabilities) but "
                                 f"the model has {n_outputs} outputs")
            y = np.ascontiguousarray(y, dtype=dtype)
            check_finite(y, name)
            return y
        raise ValueError(f"{name} must be (n,) class labels or (n, k) probabilities, "
                         f"got shape {y.shape}")

    def __repr__(self):
        return f"CrossEntropyLoss(label_smoothing={self.label_smoothing})"


def _regression_targets(y, n_outputs, dtype, name):
    """(n,) or (n, k) real targets as (n, n_outputs) of the model's dtype."""
    y = as_numeric(y, name)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"{name} must be (n,) or (n, k), got shape {y.shape}")
    if n_outputs is not None and y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {y.shape[1]} target columns but the model has "
                         f"{n_outputs} outputs")
    with np.errstate(over="ignore"):
        y = np.ascontiguousarray(y, dtype=dtype)
    check_finite(y, name)
    return y


def _matching(outputs, targets):
    """outputs and targets as C-contiguous arrays of the outputs' float dtype, same shape."""
    z = np.ascontiguousarray(Loss._outputs(outputs))
    t = as_numeric(targets, "targets")
    if t.ndim == 1 and z.shape[1] == 1:
        t = t[:, None]
    if t.shape != z.shape:
        raise ValueError(f"targets of shape {t.shape} do not match outputs of shape {z.shape}")
    return z, np.ascontiguousarray(t, dtype=z.dtype)


class MSELoss(Loss):
    """mean((outputs - targets)**2) over every element, as ``torch.nn.MSELoss``.

    (n,) targets are taken as one column for a one-output model.
    """

    def forward(self, outputs, targets):
        return self.kernels.mse_loss(*_matching(outputs, targets))

    def prepare_targets(self, y, n_outputs, dtype, name="y"):
        return _regression_targets(y, n_outputs, dtype, name)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits z, mean over every element, as ``torch.nn.BCEWithLogitsLoss``.

    loss = mean(max(z, 0) - z * t + log(1 + exp(-|z|))), which never overflows;
    gradient (sigmoid(z) - t) / (number of elements).
    """

    def forward(self, outputs, targets):
        return self.kernels.binary_cross_entropy_with_logits(*_matching(outputs, targets))

    def prepare_targets(self, y, n_outputs, dtype, name="y"):
        return _regression_targets(y, n_outputs, dtype, name)


_NAMES = {
    "cross_entropy": CrossEntropyLoss,
    "mse": MSELoss,
    "binary_cross_entropy": BCEWithLogitsLoss,
}


def get_loss(loss):
    """A loss object from a name ("cross_entropy", "mse", "binary_cross_entropy") or as given."""
    if isinstance(loss, str):
        try:
            return _NAMES[loss]()
        except KeyError:
            raise ValueError(f"unknown loss {loss!r}; use one of {sorted(_NAMES)} or a loss "
                             "object") from None
    if isinstance(loss, type):
        raise TypeError(f"loss must be a name or a loss object, got the class "
                        f"{loss.__name__}; pass an instance, e.g. {loss.__name__}()")
    if callable(loss) and callable(getattr(loss, "backward", None)):
        return loss
    raise TypeError(f"loss must be a name or an object with __call__ and backward, got {loss!r}")

