"""Command line: `python -m fastnn demo` and `python -m fastnn bench`."""
import argparse
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m fastnn",
        description="fastnn: train the demo network, or compare speed with the peers.")
    parser.add_argument("command", choices=["demo", "bench", "info"],
                        help="demo: train on the bundled digits; bench: speed comparison; "
                             "info: build and thread settings")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="the command's own options (python -m fastnn COMMAND --help)")
    if not argv:
        parser.error("give a command: demo, bench or info")
    if argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        parser.error(f"{argv[0]}: options go after the command "
                     f"(python -m fastnn COMMAND {argv[0]} ...)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from fastnn.demo import main as run
    elif args.command == "bench":
        from fastnn.bench import main as run
    else:
        run = _info
    return run(args.options)


def _info(argv):
    argparse.ArgumentParser(prog="python -m fastnn info",
                            description="Print fastnn's build and thread settings.").parse_args(argv)
    import numpy
    import scipy

    import fastnn
    from fastnn._kernels import training_module
    from fastnn._kernels.parallel import blas_thread_control, blas_threads, openmp_enabled

    blas = (f"scipy's BLAS at {blas_threads()} thread(s), bounded by fastnn's count in its "
            "kernels" if blas_thread_control() else
            "scipy's BLAS thread count not found (BLAS keeps its own threads)")
    print(f"fastnn {fastnn.__version__}: numpy {numpy.__version__}, scipy {scipy.__version__}, "
          f"OpenMP {'on' if openmp_enabled() else 'off'}, "
          f"{fastnn.get_num_threads()} thread(s); {blas}; training step "
          f"{training_module().__name__.rsplit('.', 1)[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
