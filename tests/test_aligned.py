"""Buffers that BLAS and the vector loops read start on a 64-byte line (fastnn._aligned):
the flat parameters, gradients and optimizer state, and the compiled step's workspaces."""
import pickle

import numpy as np
import pytest

import fastnn
from fastnn import BatchNorm1d, Dropout, Linear, ReLU, Sequential
from fastnn._aligned import ALIGNMENT, aligned_empty, aligned_zeros
from fastnn.nn import _compiled


def _on_line(arr):
    return arr.ctypes.data % ALIGNMENT == 0


@pytest.mark.parametrize("shape", [0, 1, 7, (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_aligned_arrays_have_the_shape_dtype_and_alignment_asked(shape, dtype):
    # many allocations: NumPy's own are 16-byte aligned, so most would miss the line
    for _ in range(16):
        empty, zeros = aligned_empty(shape, dtype), aligned_zeros(shape, dtype)
        for arr in (empty, zeros):
            assert arr.size == 0 or _on_line(arr)     # an empty array's pointer is moot
            assert arr.shape == (shape if isinstance(shape, tuple) else (shape,))
            assert arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable
        assert not zeros.any()


def _model(dtype):
    return Sequential(Linear(13, 40), BatchNorm1d(40), ReLU(), Dropout(0.1), Linear(40, 3),
                      dtype=dtype, seed=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_flat_buffers_optimizer_state_and_workspaces_start_on_a_line(dtype):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 13)).astype(dtype), rng.integers(0, 3, 50)
    for model in (_model(dtype), pickle.loads(pickle.dumps(_model(dtype)))):
        for flat in (model._flat_params, model._flat_grads, model._flat_buffers):
            assert _on_line(flat)
        opt = fastnn.optim.Adam(model.parameters())
        runner = _compiled.EpochRunner(model, _compiled.plan_for(model),
                                       fastnn.CrossEntropyLoss(), opt, 0.0, 0.0, 16)
        for arr in (runner.work, runner.x_batch, runner.target_batch, *runner.state):
            assert _on_line(arr)
        model.predict(X)
        spares = model._predict_plan()._spare_workspaces
        assert spares and all(_on_line(w) for w in spares)
        model.fit(X, y, epochs=1, batch_size=16)
        assert _on_line(model._flat_params)


@pytest.mark.parametrize("training", [False, True])
def test_workspace_slots_start_on_lines_and_do_not_overlap(training):
    plan = _compiled.plan_for(_model("float32"))
    work_off, grad_off, size = plan.layout(37, training)
    widths = plan.widths
    slots = []
    for layer, offsets in enumerate(work_off):
        w = int(widths[layer + 1])
        for slot, length in zip(offsets, (37 * w, 37 * w, 3 * w)):
            if slot >= 0:
                slots.append((int(slot), int(slot) + length))
    if training:
        slots += [(int(g), int(g) + 37 * int(max(widths))) for g in grad_off]
    slots.sort()
    assert all(start % 16 == 0 for start, _ in slots)      # 16 float32 = 64 bytes
    assert all(end <= nxt for (_, end), (nxt, _) in zip(slots, slots[1:]))
    assert slots[-1][1] == size                        # no slack after the last slot
