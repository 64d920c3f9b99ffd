"""Thread settings and the command line: bad values get clear errors, at once."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import __main__ as cli
from fastnn import bench, demo
from fastnn._config import MAX_THREADS


def test_thread_counts_beyond_what_kernels_take_are_refused():
    before = fastnn.get_num_threads()
    for n in (0, -1, MAX_THREADS + 1, 2**31, 10**30):
        with pytest.raises(ValueError, match=f"between 1 and {MAX_THREADS}"):
            fastnn.set_num_threads(n)
    assert fastnn.get_num_threads() == before


@pytest.mark.parametrize("value, expected", [("1", 1), ("3,2", 3), (" 2 ", 2),
                                             ("\u00b2", None), ("0", None), ("abc", None),
                                             (str(10**11), None)])
def test_omp_num_threads_sets_the_default_or_is_ignored(value, expected):
    env = dict(os.environ, OMP_NUM_THREADS=value)
    out = subprocess.run([sys.executable, "-c", "import fastnn, fastnn._config as c; "
                          "print(fastnn.get_num_threads(), min(c.usable_cores(), "
                          "c.MAX_THREADS))"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got, default = map(int, out.stdout.split())
    assert got == (default if expected is None else expected)


def test_perceptron_takes_any_positive_n_jobs():
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 3
    small = fastnn.Perceptron(n_jobs=1, random_state=0).fit(X, y)
    huge = fastnn.Perceptron(n_jobs=2**31, random_state=0).fit(X, y)
    np.testing.assert_array_equal(small.coef_, huge.coef_)


def _exit_code(fn, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        fn(argv)
    return exc.value.code, capsys.readouterr()


def test_each_command_has_its_own_help(capsys):
    for command, option in (("demo", "--epochs"), ("bench", "--quick"), ("info", "-h")):
        code, out = _exit_code(cli.main, [command, "--help"], capsys)
        assert code == 0 and f"python -m fastnn {command}" in out.out and option in out.out


@pytest.mark.parametrize("argv, message", [
    ([], "give a command"), (["--seed", "3", "demo"], "options go after the command"),
    (["info", "--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["demo", "--seed", "-1"], "--seed: must be at least 0, got -1"),
    (["bench", "--threads", "0"], "--threads: must be at least 1"),
    (["bench", "--threads", str(10**11)], "--threads: must be at least 1 and at most"),
    (["bench", "--samples", "-5"], "--samples: must be at least 2"),
    (["bench", "--reps", "0"], "--reps: must be at least 1"),
    (["bench", "--contenders", "nosuchlib"], "no contender matches nosuchlib"),
    (["bench", "--only", ","], "--only names no workload"),
    (["bench", "--json", "/nonexistent-dir/out.json"], "--json: cannot write into"),
])
def test_command_line_mistakes_are_usage_errors(argv, message, capsys):
    code, out = _exit_code(cli.main, argv, capsys)
    assert code == 2 and message in out.err and "Traceback" not in out.err


def test_demo_says_why_it_exits_with_status_1(capsys):
    assert demo.main(["--epochs", "1", "--no-reference"]) == 1
    assert "is under the 97% this demo is meant to reach" in capsys.readouterr().out


def test_bench_help_gives_the_quick_sample_count(capsys):
    code, out = _exit_code(bench.main, ["--help"], capsys)
    assert code == 0 and f"--quick {bench.Sizes('quick').n_train}" in out.out.replace("\n", " ")
