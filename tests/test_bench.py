"""Smoke tests of the benchmark harness (fastnn.bench): it runs, it reports, it does not crash.

No timing is asserted. The runs use --tiny (a few hundred samples, two repetitions), one
thread, and a subset of workloads, so the file takes seconds.
"""
import json

import numpy as np
import pytest

from fastnn import bench

PREDICT = ["fastnn", "fastnn.reference", "PyTorch", "scikit-learn", "NumPy", "GEMM floor"]
TRAIN = PREDICT + ["GEMM floor, scipy's BLAS"]


def _rows(text):
    """The rows of the main Markdown table as lists of cells (header excluded)."""
    lines = text.splitlines()
    start = lines.index("| " + " | ".join(bench.COLUMNS) + " |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out.json"
    import io
    import contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = bench.main(["--tiny", "--threads", "1", "--json", str(path),
                           "--only", "mlp-b128,mlp-bn-b128,predict-1,digits-epoch"])
    assert code == 0
    return out.getvalue(), json.loads(path.read_text())


def test_table_has_every_row_and_column(tiny_run):
    text, _ = tiny_run
    rows = _rows(text)
    assert all(len(r) == len(bench.COLUMNS) for r in rows)
    got = [(r[0], r[1]) for r in rows]
    expected = ([("mlp-b128", c) for c in TRAIN] + [("mlp-bn-b128", c) for c in TRAIN]
                + [("predict-1", c) for c in PREDICT]
                + [("digits-epoch", "fastnn"), ("digits-epoch", "scikit-learn"),
                    ("digits-epoch", "GEMM floor")])
    assert got == expected


def test_rows_are_timed_or_explained(tiny_run):
    text, _ = tiny_run
    for row in _rows(text):
        cells = dict(zip(bench.COLUMNS, row))
        if cells["median"] == "n/a":
            assert cells["note"].startswith("n/a: ") and len(cells["note"]) > 5
        else:
            assert cells["median"].endswith((" s", " ms", " µs"))
    # the contenders that only need NumPy always run
    by = {(r[0], r[1]): r for r in _rows(text)}
    for wl in ("mlp-b128", "mlp-bn-b128", "predict-1"):
        assert by[(wl, "NumPy")][2] != "n/a"
        assert by[(wl, "GEMM floor")][2] != "n/a"
        assert by[(wl, "GEMM floor")][5] == "1.00x"
    for wl in ("mlp-b128", "mlp-bn-b128"):     # scipy is a dependency of fastnn
        assert by[(wl, "GEMM floor, scipy's BLAS")][2] != "n/a"


def test_json_output(tiny_run):
    _, report = tiny_run
    assert {"machine", "sizes", "results", "targets", "elapsed_s"} <= set(report)
    assert report["machine"]["threads"] == 1
    assert report["sizes"]["mode"] == "tiny"
    results = report["results"]
    assert len(results) == 2 * len(TRAIN) + len(PREDICT) + 3   # digits: with its floor
    for r in results:
        assert r["status"] in ("ok", "n/a")
        if r["status"] == "ok":
            assert len(r["times"]) == report["sizes"]["reps"] or r["workload"] == "digits-epoch"
            assert r["min"] <= r["median"] <= r["max"]
            assert all(t > 0 for t in r["times"])
        else:
            assert r["reason"]
        share = r["other_processes_cpu_share"]
        assert share is None or 0.0 <= share <= 1.0
    for t in report["targets"]:
        assert len(t["per_round"]) <= report["sizes"]["reps"]
        assert all(r > 0 for r in t["per_round"])
    numpy_b128 = next(r for r in results
                      if r["workload"] == "mlp-b128" and r["contender"] == "NumPy")
    assert 0.0 <= numpy_b128["accuracy"] <= 1.0


def test_failing_contender_shows_na_and_the_run_goes_on(monkeypatch, capsys):
    spec, contenders, title = bench.WORKLOADS["mlp-b512"]

    def broken(spec, ctx):
        raise RuntimeError("feature not there yet")

    class FailsWhileRunning(bench.Trial):
        def run(self):
            raise ValueError("exploded mid-run")

    monkeypatch.setitem(bench.WORKLOADS, "mlp-b512", (spec, [
        ("broken", broken), ("fails", lambda s, c: FailsWhileRunning()),
        ("NumPy", bench.NumpyTrain)], title))
    assert bench.main(["--tiny", "--threads", "1", "--only", "mlp-b512"]) == 0
    rows = {r[1]: r for r in _rows(capsys.readouterr().out)}
    assert rows["broken"][2] == "n/a" and "feature not there yet" in rows["broken"][7]
    assert rows["fails"][2] == "n/a" and "exploded mid-run" in rows["fails"][7]
    assert rows["NumPy"][2] != "n/a"


def test_targets_give_the_ratio_of_medians_and_each_round_s_ratio():
    fast = bench.Result("mlp-b512", bench.FASTNN, "s/epoch")
    torch = bench.Result("mlp-b512", bench.TORCH, "s/epoch")
    numpy = bench.Result("mlp-b512", bench.NUMPY, "s/epoch")
    fast.times, torch.times, numpy.times = [1.0, 2.0, 4.0], [2.0, 2.0, 2.0], [8.0, 1.0]
    rows = {t["compared"]: t for t in bench.evaluate_targets([[fast, torch, numpy]])}
    vs_torch, vs_numpy = rows["fastnn / PyTorch"], rows["fastnn / NumPy"]
    assert vs_torch["measured"] == 1.0 and vs_torch["met"] is False     # 2.0 / 2.0
    assert vs_torch["per_round"] == [0.5, 1.0, 2.0]
    # NumPy stopped after two rounds: only the rounds both ran are paired
    assert vs_numpy["measured"] == pytest.approx(2.0 / 4.5)
    assert vs_numpy["per_round"] == [0.125, 2.0]
    table = bench.targets_table(bench.evaluate_targets([[fast, torch, numpy]]))
    assert "| 1.00x (0.50-2.00, n=3) |" in table
    numpy.reason = "failed"
    rows = {t["compared"]: t for t in bench.evaluate_targets([[fast, torch, numpy]])}
    assert rows["fastnn / NumPy"]["measured"] is None
    assert rows["fastnn / NumPy"]["per_round"] == []
    assert "| n/a | n/a | n/a |" in bench.targets_table([rows["fastnn / NumPy"]])


def test_only_rejects_unknown_workloads():
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--only", "no-such-workload"])


def test_list(capsys):
    assert bench.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in bench.WORKLOADS)


def test_exact_epochs_makes_sklearn_run_every_epoch():
    MLPClassifier = pytest.importorskip("sklearn.neural_network").MLPClassifier
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), np.arange(40) % 2
    # a learning rate this large makes the loss bounce, so the early stop triggers
    params = {"hidden_layer_sizes": (4,), "learning_rate_init": 10.0, "random_state": 0}
    with pytest.warns(Warning):
        control = MLPClassifier(max_iter=50, tol=0.0, **params).fit(X, y)
        clf = MLPClassifier(**params, **bench.exact_epochs(50)).fit(X, y)
    assert control.n_iter_ < 50
    assert clf.n_iter_ == 50


@pytest.mark.parametrize("batch_norm", [False, True])
def test_numpy_contender_matches_pytorch(batch_norm):
    """The hand-written NumPy MLP does the same work as PyTorch: same weights after 3 steps."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    spec = {"kind": "train", "batch": 16, "dtype": "float64", "batch_norm": batch_norm,
            "dropout": 0.0, "l2": 1e-3 if batch_norm else 0.0}
    weights = [(w, 0.1 * rng.standard_normal(b.shape)) for w, b in bench.init_weights()]
    net = bench.NumpyMLP(weights, bench._layer_plan(spec), "float64", l2=spec["l2"])
    model, linears = bench.torch_model(spec, "float64", weights)
    decay = {id(lin.weight) for lin in linears}
    opt = torch.optim.Adam([
        {"params": [p for p in model.parameters() if id(p) in decay],
         "weight_decay": 2 * spec["l2"]},
        {"params": [p for p in model.parameters() if id(p) not in decay],
         "weight_decay": 0.0}], lr=bench.LR)
    X, y = rng.standard_normal((16, 784)), rng.integers(0, 10, 16)
    bufs = net._buffers(16, 784)
    for _ in range(3):
        bufs["x"][...] = X
        bufs["y"][...] = y
        loss = net.train_step(bufs["x"], bufs["y"], bufs)
        opt.zero_grad()
        t_loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(X)),
                                                   torch.from_numpy(y))
        t_loss.backward()
        opt.step()
        assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    # Adam's step is lr * m / (sqrt(v) + eps): where a gradient is ~0 (the bias before a
    # BatchNorm, whose true gradient is exactly 0) rounding noise of ~1e-17 is amplified
    # up to ~lr; everywhere else float64 rounding stays far below 1e-9.
    # (so that bias, and the eval-mode output that depends on it, is only compared
    # without BatchNorm).
    for lin, layer in zip(linears, net.layers):
        np.testing.assert_allclose(layer["W"][0], lin.weight.detach().numpy().T, atol=1e-9)
        if not layer["bn"]:
            np.testing.assert_allclose(layer["b"][0], lin.bias.detach().numpy(), atol=1e-9)
    if not batch_norm:
        model.eval()
        with torch.no_grad():
            np.testing.assert_allclose(net.predict(X), model(torch.from_numpy(X)).numpy(),
                                       rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scipy_blas", [False, True])
def test_gemm_floor_does_the_eight_products(scipy_blas):
    ctx = bench.Context(bench.Sizes("tiny"), threads=1)
    trial = bench.FloorTrain(bench._train_spec(128), ctx, scipy_blas=scipy_blas)
    trial.prepare()
    trial.run()
    X = ctx.problem.X.astype(np.float64)
    x = X[(len(X) - 1) // 128 * 128:]                      # the last batch
    W1, W2, W3 = (w.astype(np.float64) for w in trial.W)
    h1 = x @ W1
    h2 = h1 @ W2
    h3 = h2 @ W3
    d2 = h3 @ W3.T
    d1 = d2 @ W2.T
    # float32 products of inner length K err by about K * 2**-24 relative to the largest
    # term; K <= 784 here, so 1e-4 of the largest entry is a safe bound.
    for got, want in ((trial.dW[2], h2.T @ h3), (trial.dW[1], h1.T @ d2),
                      (trial.dW[0], x.T @ d1)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_estimator_floor_does_the_products_of_every_batch():
    ctx = bench.Context(bench.Sizes("tiny"), threads=1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((450, 12)).astype(np.float32)
    y = rng.integers(0, 3, 450)
    params = dict(hidden_layer_sizes=(7, 5), **bench.exact_epochs(2))
    trial = bench.EstimatorFloor(params, (X, y, X, y), True, ctx)
    assert trial.batch == 200                        # scikit-learn's "auto"
    assert [W.shape for W in trial.W] == [(12, 7), (7, 5), (5, 3)]
    trial.prepare()
    assert trial.calls == 2                          # per epoch: time / 2
    trial.run()
    # the last batch (rows 400-449): forward through the weights, then every backward
    # product, with the last layer's output standing in for its gradient (as the floor's)
    x = X[400:].astype(np.float64)
    W = [w.astype(np.float64) for w in trial.W]
    h = [x @ W[0]]
    h.append(h[0] @ W[1])
    h.append(h[1] @ W[2])
    d1 = h[2] @ W[2].T
    d0 = d1 @ W[1].T
    for got, want in ((trial.dW[2], h[1].T @ h[2]), (trial.dW[1], h[0].T @ d1),
                      (trial.dW[0], x.T @ d0)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_targets_say_what_they_allow_in_gemm_floors():
    fast = bench.Result("digits-epoch", bench.FASTNN, "s/epoch")
    sk = bench.Result("digits-epoch", bench.SKLEARN, "s/epoch")
    floor = bench.Result("digits-epoch", bench.FLOOR, "s/epoch")
    fast.times, sk.times, floor.times = [1.0], [3.0], [0.5]
    fast.accuracies = sk.accuracies = [0.9]
    row, = bench.evaluate_targets([[fast, sk, floor]])
    assert row["target_over_floor"] == pytest.approx(0.2 * 3.0 / 0.5)
    assert "target = 1.20x GEMM floor" in row["detail"]
    floor.reason = "failed"
    row, = bench.evaluate_targets([[fast, sk, floor]])
    assert row["target_over_floor"] is None and "GEMM floor" not in row["detail"]
    # a target against the floor itself says nothing more
    fast.workload = floor.workload = "mlp-b128"
    floor.reason = None
    row, = [r for r in bench.evaluate_targets([[fast, floor]])
            if r["compared"] == "fastnn / GEMM floor"]
    assert row["measured"] == 2.0 and row["target_over_floor"] is None


def test_profile_mode(tmp_path, capsys):
    path = tmp_path / "profile.json"
    assert bench.main(["--profile", "--tiny", "--threads", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "## Profile:" in out and "GEMM floor" in out and "cProfile" in out
    prof = json.loads(path.read_text())["profile"]
    assert prof["target"] in ("fastnn", "NumPy")
    assert prof["n_batches"] == 512 // 32
    assert prof["epoch_s"] > 0 and prof["floor_s"] > 0 and prof["top"]
