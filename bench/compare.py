#!/usr/bin/env python
"""fastnn's speed comparison, from a checkout: ``python bench/compare.py [options]``.

A thin wrapper: the one implementation is ``fastnn/bench.py`` (also run by
``python -m fastnn bench``). See ``bench/README.md`` and ``--help``.
"""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_bench():
    """This checkout's fastnn.bench; if the package cannot be imported (kernels not built),
    the module alone, so the other contenders still run and fastnn's columns say why not."""
    sys.path.insert(0, str(ROOT))
    try:
        from fastnn import bench
        return bench
    except ImportError as exc:
        print(f"note: import fastnn failed ({exc}); running without it", file=sys.stderr)
        spec = importlib.util.spec_from_file_location("fastnn_bench", ROOT / "fastnn" / "bench.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


if __name__ == "__main__":
    sys.exit(load_bench().main(sys.argv[1:]))
