"""The compiled training step (whole epochs in one kernel call) against the layer-by-layer
path from Python: the same seed and data must give bit-identical weights, running
statistics, history and predictions."""
import numpy as np
import pytest

import fastnn
from fastnn import BatchNorm1d, Dropout, EarlyStopping, Linear, ReLU, Sequential, Sigmoid, Tanh
from fastnn._kernels import training as _kernel
from fastnn.nn import _compiled
from fastnn.nn.layers import Module


def _data(n, n_in, k, dtype, task, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    if task == "labels":
        y = rng.integers(0, k, n)
    elif task == "probs":
        y = rng.dirichlet(np.ones(k), n).astype(dtype)
    elif task == "binary":
        y = (rng.random((n, k)) < 0.5).astype(dtype)
    else:
        y = rng.standard_normal((n, k)).astype(dtype)
    return X, y


def _model(dtype, n_in, k, seed=7, kinds=("bn", "relu", "dropout", "tanh", "sigmoid"),
           kernels=None):
    layers = [Linear(n_in, 12)]
    if "bn" in kinds:
        layers.append(BatchNorm1d(12))
    layers.append(ReLU())
    if "dropout" in kinds:
        layers.append(Dropout(0.25))
    layers += [Linear(12, 9), Tanh(), Linear(9, 6), Sigmoid(), Linear(6, k)]
    return Sequential(*layers, dtype=dtype, seed=seed, kernels=kernels)


def _fit_both(make, X, y, **fit_kwargs):
    fast, slow = make(), make()
    calls = []
    real_run = _compiled.EpochRunner.run_epoch

    def counting_run(self, *args, **kwargs):
        calls.append(1)
        return real_run(self, *args, **kwargs)

    _compiled.EpochRunner.run_epoch = counting_run
    try:
        h_fast = fast.fit(X, y, **fit_kwargs)
    finally:
        _compiled.EpochRunner.run_epoch = real_run
    assert calls, "the compiled step was not used"
    h_slow = slow.fit(X, y, compiled=False, **fit_kwargs)
    return fast, slow, h_fast, h_slow


def _assert_identical(fast, slow, h_fast, h_slow):
    np.testing.assert_array_equal(fast._flat_params, slow._flat_params)
    np.testing.assert_array_equal(fast._flat_buffers, slow._flat_buffers)
    assert h_fast.history == h_slow.history
    # and the generators are in the same state: later training stays identical too
    assert fast._rng.bit_generator.state == slow._rng.bit_generator.state


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,task", [
    ("cross_entropy", "labels"), ("cross_entropy", "probs"), ("mse", "regression"),
    ("binary_cross_entropy", "binary")])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_epochs_identical_to_layer_by_layer(dtype, loss, task, optimizer):
    k = 4
    X, y = _data(101, 8, k, dtype, task)      # 101 rows: a ragged last batch
    fast, slow, hf, hs = _fit_both(lambda: _model(dtype, 8, k), X, y, loss=loss,
                                   optimizer=optimizer, lr=0.05, epochs=3, batch_size=16,
                                   l1=1e-3, l2=1e-2, validation_split=0.2)
    _assert_identical(fast, slow, hf, hs)
    np.testing.assert_array_equal(fast.predict(X), slow.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("l1,l2", [(1e-4, 0.0), (0.0, 1e-3), (1e-4, 1e-3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_penalty_and_adam_identical_over_many_chunks(dtype, optimizer, l1, l2, threads):
    # 78,341 parameters: ten chunks of the penalty and of Adam, the last holding the end
    # of the 78,080 penalised weights and the biases after them, and enough for the
    # pool's worker to share them at 2 threads.
    X, y = _data(70, 300, 5, dtype, "labels")

    def make():
        return Sequential(Linear(300, 256), ReLU(), Linear(256, 5), dtype=dtype, seed=3)

    before = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)
    try:
        fast, slow, hf, hs = _fit_both(make, X, y, optimizer=optimizer, lr=0.01, epochs=2,
                                       batch_size=16, l1=l1, l2=l2)
    finally:
        fastnn.set_num_threads(before)
    assert fast._n_penalised == 78_080 and fast._flat_params.size == 78_341
    _assert_identical(fast, slow, hf, hs)


@pytest.mark.parametrize("smoothing", [0.1, 0.5])
@pytest.mark.parametrize("task", ["labels", "probs"])
def test_label_smoothing_identical(smoothing, task):
    X, y = _data(64, 5, 3, "float64", task)
    fast, slow, hf, hs = _fit_both(lambda: _model("float64", 5, 3), X, y,
                                   loss=fastnn.CrossEntropyLoss(label_smoothing=smoothing),
                                   epochs=2, batch_size=10)
    _assert_identical(fast, slow, hf, hs)


def test_batchnorm_merges_a_one_row_last_batch_identically():
    X, y = _data(33, 6, 3, "float32", "labels")         # 33 = 2 * 16 + 1
    fast, slow, hf, hs = _fit_both(lambda: _model("float32", 6, 3), X, y, epochs=2,
                                   batch_size=16)
    _assert_identical(fast, slow, hf, hs)


def test_optimizer_objects_and_early_stopping_identical():
    X, y = _data(80, 6, 3, "float32", "labels")

    def make():
        return _model("float32", 6, 3, kinds=("relu",))

    fast, slow = make(), make()
    stop_fast = EarlyStopping(patience=2)
    stop_slow = EarlyStopping(patience=2)
    h_fast = fast.fit(X, y, optimizer=fastnn.optim.AdamW(fast.parameters(), lr=0.05,
                                                         weight_decay=0.1),
                      epochs=12, validation_split=0.25, early_stopping=stop_fast)
    h_slow = slow.fit(X, y, optimizer=fastnn.optim.AdamW(slow.parameters(), lr=0.05,
                                                         weight_decay=0.1),
                      epochs=12, validation_split=0.25, early_stopping=stop_slow,
                      compiled=False)
    _assert_identical(fast, slow, h_fast, h_slow)


def _avx2_module():
    from fastnn._kernels.parallel import cpu_has_avx2
    if not cpu_has_avx2():
        pytest.skip("the CPU has no AVX2")
    try:
        from fastnn._kernels import training_avx2
    except ImportError:
        pytest.skip("this build has no AVX2 training module")
    return training_avx2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, task, optimizer", [
    ("cross_entropy", "labels", "adam"), ("cross_entropy", "probs", "nesterov"),
    ("mse", "regression", "adamw"), ("binary_cross_entropy", "binary", "sgd")])
def test_the_avx2_build_of_the_training_step_gives_the_same_bits(monkeypatch, dtype, loss,
                                                                 task, optimizer):
    modules = [_kernel, _avx2_module()]
    X, y = _data(203, 8, 4, dtype, task, seed=5)        # a last batch of 11 rows
    results = []
    for module in modules:
        monkeypatch.setattr(_compiled, "_kernel", module)
        model = _model(dtype, 8, 4)
        model.fit(X, y, loss=loss, optimizer=optimizer, lr=0.01, epochs=3, batch_size=16,
                  l1=1e-4, l2=1e-3)
        plan = model._predict_plan()
        assert type(plan.predictor) is module.Predictor
        results.append((model._flat_params.copy(), model._flat_buffers.copy(),
                        model.predict(X), model.history.history["loss"]))
    for generic, avx2 in zip(*results):
        np.testing.assert_array_equal(generic, avx2)
    assert not np.array_equal(results[0][0], _model(dtype, 8, 4)._flat_params)


def test_compiled_predict_matches_layer_by_layer():
    X, y = _data(300, 8, 4, "float32", "labels")
    model = _model("float32", 8, 4)
    model.fit(X, y, epochs=1)                     # running statistics away from 0 and 1
    assert model._predict_plan() is not None
    by_layer = X
    for layer in model.layers:
        by_layer = layer.infer(by_layer)
    np.testing.assert_array_equal(model.predict(X), by_layer)
    np.testing.assert_array_equal(model.predict(X[:1]), by_layer[:1])


def test_compiled_predict_follows_changes_to_the_model():
    X, y = _data(300, 8, 4, "float64", "labels")
    model = _model("float64", 8, 4)
    model.fit(X, y, epochs=1)
    first = model.predict(X)
    plan = model._predict_plan()
    assert model._predict_plan() is plan                  # cached between calls
    model.layers[1].eps = 0.5                             # batch norm's eps
    np.testing.assert_array_equal(model.predict(X), model.infer(X))
    assert not np.array_equal(model.predict(X), first)
    model.layers[0].weight.data[0, 0] += 1.0              # in place: the plan reads it
    np.testing.assert_array_equal(model.predict(X), model.infer(X))
    model.layers[3].p = 0.0                               # dropout: identity in eval anyway
    np.testing.assert_array_equal(model.predict(X), model.infer(X))
    model.kernels = "reference"                           # the Python path
    assert model._predict_plan() is None
    np.testing.assert_allclose(model.predict(X), model.infer(X), rtol=1e-12)


def test_predictor_rejects_an_input_of_another_dtype():
    model = _model("float32", 8, 4)
    X = _data(5, 8, 4, "float64", "labels")[0]
    model.predict(X.astype(np.float32))
    plan = model._predict_plan()
    work_off, _, work = plan.workspace(5, False, np.float64)
    out = np.zeros((5, 4))
    with pytest.raises(TypeError, match="float32"):
        plan.predictor.predict(X, work_off, work, out, 5, 1)
    assert not out.any()


def test_predictor_rejects_missing_or_undersized_arrays():
    X, _ = _data(10, 8, 4, "float64", "labels")
    model = _model("float64", 8, 4)
    plan = model._predict_plan()
    work_off, _, size = plan.layout(10, False)
    work = np.full(size, 7.0)
    out = np.full((10, 4), 3.0)
    run = plan.predictor.predict
    with pytest.raises(TypeError):
        run(X, work_off, None, out, 10, 1)
    with pytest.raises(TypeError):
        run(X, work_off, work, None, 10, 1)
    with pytest.raises(ValueError, match="workspace is smaller than a chunk"):
        run(X, work_off, work[:-1], out, 10, 1)
    with pytest.raises(ValueError, match=r"out has shape \(9, 4\) but the output is \(10, 4\)"):
        run(X, work_off, work, out[:9], 10, 1)
    with pytest.raises(ValueError, match="X has 7 features but the plan expects 8"):
        run(np.ascontiguousarray(X[:, :7]), work_off, work, out, 10, 1)
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        run(X, work_off, work, out, 0, 1)
    with pytest.raises(ValueError, match="one row per layer"):
        run(X, work_off[:-1], work, out, 10, 1)
    assert (out == 3.0).all() and (work == 7.0).all()      # a failed call wrote nothing
    assert run(X, work_off, work, out, 10, 1)
    np.testing.assert_array_equal(out, model.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernels", [None, "reference"])
def test_predict_rejects_nan_and_infinity_in_any_chunk(dtype, kernels):
    # 600 rows: three chunks of the compiled plan, which checks each one in the kernel;
    # the reference kernels take the per-layer path, checked by NumPy
    model = _model(dtype, 8, 4, kernels=kernels)
    assert (model._predict_plan() is None) == (kernels is not None)
    X = _data(600, 8, 4, dtype, "labels")[0]
    expected = model.predict(X)
    for row, col in [(0, 0), (255, 7), (256, 0), (599, 7)]:
        for bad in (np.nan, np.inf, -np.inf):
            X_bad = X.copy()
            X_bad[row, col] = bad
            with pytest.raises(ValueError, match="X contains NaN or infinity"):
                model.predict(X_bad)
    np.testing.assert_array_equal(model.predict(X), expected)
    if dtype == "float32":     # finite float64 beyond float32's range becomes infinity
        with pytest.raises(ValueError, match="beyond the float32 range"):
            model.predict(np.where(np.arange(8) == 3, 1e300, X.astype(np.float64)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predictor_run_chunks_into_a_new_output_with_kept_workspaces(dtype):
    model = _model(dtype, 8, 4)
    X = _data(600, 8, 4, dtype, "labels")[0]
    plan = model._predict_plan()
    work_off, _, work = plan.workspace(600, False, dtype)
    expected = np.zeros((600, 4), dtype)
    assert plan.predictor.predict(X, work_off, work, expected, 600, 1)
    first = plan.predictor.run(X, 1)                  # chunks of 256, 256 and 88 rows
    second = plan.predictor.run(X[:1], 2)
    assert first.dtype == dtype and first.shape == (600, 4) and second.shape == (1, 4)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, expected[:1])
    assert len(plan._spare_workspaces) == 1           # taken and given back each call
    bad = X.copy()
    bad[300, 5] = np.nan
    assert plan.predictor.run(bad, 1) is None
    np.testing.assert_array_equal(first, expected)    # each call has its own output
    assert len(plan._spare_workspaces) == 1
    with pytest.raises(TypeError, match="float"):
        plan.predictor.run(X.astype(np.float32 if dtype == "float64" else np.float64), 1)
    assert len(plan._spare_workspaces) == 1
    with pytest.raises(ValueError, match="max_chunk must be at least 1"):
        _kernel.Predictor(plan.kinds, plan.widths, plan.param_off, plan.buffer_off,
                          plan.layer_args, model._flat_params, model._flat_buffers, 0)


def test_predictor_reports_the_first_chunk_with_nan_and_stops_there():
    model = _model("float64", 8, 4)
    X = _data(10, 8, 4, "float64", "labels")[0]
    model.predict(X)
    plan = model._predict_plan()
    work_off, _, work = plan.workspace(4, False, np.float64)
    out = np.zeros((10, 4))
    assert plan.predictor.predict(X, work_off, work, out, 4, 1) is True
    np.testing.assert_array_equal(out, model.predict(X))
    X[5, 2] = np.nan
    out[:] = 0
    assert plan.predictor.predict(X, work_off, work, out, 4, 1) is False
    assert out[:4].any() and not out[4:].any()     # chunk 0 done, chunk 1 (rows 4-7) not


class Doubler(Module):
    """A custom Python layer: the compiled step cannot describe it."""
    preserves_width = True

    def forward(self, x):
        return 2 * x

    def infer(self, x):
        return 2 * x

    def backward(self, dy):
        return 2 * dy


def test_custom_layer_takes_the_python_path():
    X, y = _data(40, 5, 3, "float64", "labels")
    model = Sequential(Linear(5, 7), Doubler(), ReLU(), Linear(7, 3), dtype="float64", seed=1)
    assert _compiled.plan_for(model) is None
    before = model._flat_params.copy()
    with pytest.raises(ValueError, match="compiled=True"):
        model.fit(X, y, epochs=1, compiled=True)
    np.testing.assert_array_equal(model._flat_params, before)
    history = model.fit(X, y, epochs=2)
    assert len(history.history["loss"]) == 2
    assert not np.array_equal(model._flat_params, before)


def test_reference_kernels_take_the_python_path():
    model = _model("float64", 5, 3)
    model.kernels = "reference"
    assert _compiled.plan_for(model) is None


def test_compiled_divergence_keeps_finite_weights():
    X, y = _data(64, 5, 3, "float64", "regression")
    model = Sequential(Linear(5, 3), dtype="float64", seed=0)
    with pytest.raises(fastnn.nn.TrainingDivergedError, match="epoch 1.*learning rate"):
        model.fit(X * 1e150, y, loss="mse", optimizer="sgd", lr=1e10, epochs=3,
                  compiled=True)
    assert np.isfinite(model._flat_params).all()


def test_epoch_runner_rejects_rows_outside_the_data():
    """The kernel gathers rows by index: an index outside X, or batches reaching past it,
    raise instead of reading other memory, and the weights stay as they were."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = Sequential(Linear(6, 5), ReLU(), Linear(5, 3), seed=0)
    model.fit(X, y, epochs=1, batch_size=8)          # binds the flat buffers
    opt = fastnn.optim.Adam(model.parameters())
    runner = _compiled.EpochRunner(model, _compiled.plan_for(model), fastnn.CrossEntropyLoss(),
                                   opt, 0.0, 0.0, 8)
    before = model._flat_params.copy()
    bounds = np.arange(0, 41, 8)
    for order in (np.r_[np.arange(39), 40], np.r_[np.arange(39), -1]):
        with pytest.raises(ValueError, match="row index"):
            runner.run_epoch(X, y, bounds, order)
    with pytest.raises(ValueError, match="past the samples"):
        runner.run_epoch(X, y, np.r_[bounds, 48])
    np.testing.assert_array_equal(model._flat_params, before)
    completed, _ = runner.run_epoch(X, y, bounds, rng.permutation(40))
    assert completed == 5


def test_epoch_kernel_rejects_mismatched_arrays():
    """train_epoch checks what its caller guarantees: labels in range, per-sample arrays
    of the samples' length, a workspace and per-batch arrays large enough. Each wrong
    call raises and leaves the weights as they were."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = Sequential(Linear(6, 5), ReLU(), Linear(5, 3), seed=0)
    model.fit(X, y, epochs=1, batch_size=8)
    opt = fastnn.optim.Adam(model.parameters())
    runner = _compiled.EpochRunner(model, _compiled.plan_for(model), fastnn.CrossEntropyLoss(),
                                   opt, 0.0, 0.0, 8)
    before = model._flat_params.copy()
    bounds = np.arange(0, 41, 8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        runner.run_epoch(X, np.r_[y[:-1], 3], bounds)
    with pytest.raises(ValueError, match="one row per sample"):
        runner.run_epoch(X, y[:-1], bounds)
    with pytest.raises(ValueError, match="one row per sample"):
        runner.run_epoch(X, y, bounds, sample_weight=np.ones(39))
    with pytest.raises(ValueError, match="same layers"):
        runner.run_epoch(np.ascontiguousarray(X[:, :5]), y, bounds)
    work = runner.work
    runner.work = work[:-1]
    with pytest.raises(ValueError, match="workspace is smaller than a batch"):
        runner.run_epoch(X, y, bounds)
    runner.work, row_loss = work, runner.row_loss
    runner.row_loss = row_loss[:7]
    with pytest.raises(ValueError, match="too short"):
        runner.run_epoch(X, y, bounds)
    runner.row_loss = row_loss
    np.testing.assert_array_equal(model._flat_params, before)
    completed, _ = runner.run_epoch(X, y, bounds)
    assert completed == 5


# an eval-mode dropout passes its input on without writing its own output slot: the
# compiled predict must read the final output wherever it is, not the last layer's slot
_IDENTITY_PLACEMENTS = {
    "last": lambda: [Linear(5, 4), Dropout(0.7)],
    "after relu, last": lambda: [Linear(5, 4), ReLU(), Dropout(0.5)],
    "two last": lambda: [Linear(5, 4), Dropout(0.5), Dropout(0.2)],
    "first": lambda: [Dropout(0.5), Linear(5, 4)],
    "first and last": lambda: [Dropout(0.3), Linear(5, 4), Tanh(), Dropout(0.4)],
    "middle": lambda: [Linear(5, 6), Dropout(0.5), Linear(6, 4)],
    "two middle": lambda: [Linear(5, 6), Dropout(0.5), Dropout(0.1), Sigmoid(), Linear(6, 4)],
    "before batch norm": lambda: [Linear(5, 4), Dropout(0.5), BatchNorm1d(4)],
    "after batch norm, last": lambda: [Linear(5, 4), BatchNorm1d(4), Dropout(0.5)],
    "p zero last": lambda: [Linear(5, 4), ReLU(), Dropout(0.0), Dropout(0.6)],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("placement", sorted(_IDENTITY_PLACEMENTS))
def test_compiled_predict_with_eval_identity_layers_equals_eval_forward(dtype, placement):
    chunk = _compiled.PREDICT_CHUNK
    X = _data(2 * chunk + 3, 5, 4, dtype, "labels", seed=3)[0]
    model = Sequential(*_IDENTITY_PLACEMENTS[placement](), dtype=dtype, seed=1)
    assert model._predict_plan() is not None
    model.eval()
    expected = model(X)
    for n in (1, 5, chunk - 1, chunk, chunk + 1, 2 * chunk + 3):
        for _ in range(2):          # the second call reuses the first's workspace
            np.testing.assert_array_equal(model.predict(X[:n]), expected[:n])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_validation_loss_with_dropout_last_is_the_eval_loss(dtype):
    X, y = _data(300, 5, 3, dtype, "labels", seed=4)
    model = Sequential(Linear(5, 3), ReLU(), Dropout(0.5), dtype=dtype, seed=0)
    history = model.fit(X, y, epochs=2, batch_size=64, validation_data=(X, y), verbose=0)
    assert history.history["val_loss"][-1] == float(fastnn.CrossEntropyLoss()(model.infer(X), y))


# a layer attribute set after the layer was made: the compiled fit refuses what the
# layer-by-layer fit refuses, with the same error, before anything changes
_BAD_ATTRIBUTES = [(3, "p", 1.5, ValueError), (3, "p", -0.5, ValueError),
                   (3, "p", 2.0, ValueError), (3, "p", float("nan"), ValueError),
                   (3, "p", "0.5", TypeError), (1, "eps", -1.0, ValueError),
                   (1, "eps", float("nan"), ValueError), (1, "eps", float("inf"), ValueError),
                   (1, "momentum", 5.0, ValueError), (1, "momentum", -1.0, ValueError),
                   (1, "momentum", float("nan"), ValueError)]


@pytest.mark.parametrize("index, attr, value, error", _BAD_ATTRIBUTES)
def test_compiled_fit_refuses_bad_layer_attributes_as_the_layer_path(index, attr, value, error):
    X, y = _data(40, 8, 4, "float64", "labels")
    messages = []
    for compiled in (None, False):
        model = _model("float64", 8, 4)
        setattr(model.layers[index], attr, value)
        params, buffers = model._flat_params.copy(), model._flat_buffers.copy()
        rng_state = model._rng.bit_generator.state
        with pytest.raises(error) as info:
            model.fit(X, y, epochs=2, batch_size=16, compiled=compiled)
        messages.append(str(info.value))
        np.testing.assert_array_equal(model._flat_params, params)
        if compiled is None:
            # the compiled path refuses before its first batch; the layer path only at
            # the refused layer, after the batch norm before it updated its statistics
            assert model._predict_plan() is not None
            np.testing.assert_array_equal(model._flat_buffers, buffers)
            assert model._rng.bit_generator.state == rng_state
    assert messages[0] == messages[1]


def test_eval_mode_ignores_dropout_p_as_the_layer_path():
    X = _data(40, 8, 4, "float64", "labels")[0]
    model = _model("float64", 8, 4)
    model.layers[3].p = 1.5
    np.testing.assert_array_equal(model.predict(X), model.infer(X))
