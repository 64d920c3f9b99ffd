"""Parameter: a trainable array and its gradient, usually views into a model's flat buffers."""
import numpy as np

from fastnn._validation import as_numeric

__all__ = ["Parameter"]


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape and dtype) and a ``name``.

    Inside a :class:`~fastnn.nn.Sequential`, ``data`` and ``grad`` are views into the
    model's two flat buffers (one for every parameter value, one for every gradient), so
    that an optimizer can update all parameters in one pass. Assigning to ``data`` or
    ``grad`` therefore copies into the existing array (shapes must match) instead of
    replacing it, and ``p.data[...] = w`` works as well.
    """

    __slots__ = ("_data", "_grad", "name", "_flat")

    def __init__(self, data, name=None):
        arr = as_numeric(data, "Parameter data")     # no None read as NaN, no complex
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else \
            np.float32 if arr.dtype == np.float16 else np.float64
        arr = np.array(arr, dtype=dtype, order="C", copy=True)
        self._data = arr
        self._grad = np.zeros_like(arr)
        self.name = name
        # (flat_data, flat_grad, offset) once a model has bound this parameter.
        self._flat = None

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._assign(self._data, value, "data")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        self._assign(self._grad, value, "grad")

    def _assign(self, target, value, what):
        value = as_numeric(value, f"{self._label()}.{what}")
        if value.shape != target.shape:
            raise ValueError(f"cannot assign an array of shape {value.shape} to "
                             f"{self._label()}.{what} of shape {target.shape}")
        target[...] = value

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    def zero_grad(self):
        self._grad.fill(0)

    def _bind(self, flat_data, flat_grad, offset):
        """Move this parameter into views of the flat buffers at ``offset`` (values are copied,
        cast to the buffers' dtype; the gradient starts at zero)."""
        n = self._data.size
        data = flat_data[offset:offset + n].reshape(self._data.shape)
        grad = flat_grad[offset:offset + n].reshape(self._data.shape)
        data[...] = self._data
        grad.fill(0)
        self._data, self._grad, self._flat = data, grad, (flat_data, flat_grad, offset)

    # Pickling and copying: the arrays are copied as standalone arrays, so the tie to a
    # model's flat buffers is dropped (a Sequential being copied binds them again); kept,
    # it would drag the whole model's buffers along and make an optimizer update them
    # instead of the copy's own arrays.
    def __getstate__(self):
        return None, {"_data": self._data, "_grad": self._grad, "name": self.name,
                      "_flat": None}

    def __setstate__(self, state):
        for name, value in state[1].items():
            setattr(self, name, value)
        self._flat = None       # pickles of earlier versions kept it

    def _label(self):
        return f"Parameter {self.name!r}" if self.name else "Parameter"

    def __repr__(self):
        return f"{self._label()}(shape={self.shape}, dtype={self.dtype})"
