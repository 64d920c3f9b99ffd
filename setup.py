"""Build fastnn's compiled kernels.

Environment switches:
  FASTNN_NATIVE=1   compile with -march=native (the wheel then only runs on CPUs like
                    the build machine's; off by default so a wheel runs on any x86-64).
  FASTNN_DEBUG=1    turn Cython's bounds, wraparound and initialisation checks back on.
  FASTNN_OPENMP=0   build without OpenMP even where the compiler supports it.
On x86-64, fastnn/_kernels/training_avx2.pyx (training.pyx again) is built with -mavx2.
"""
import os
import platform
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
KERNELS = ["activations", "softmax", "losses", "linear", "batchnorm", "dropout", "parallel",
           "optimizers", "training", "training_avx2", "perceptron"]
# training.pyx again, for CPUs with AVX2 (fastnn._kernels.training_module picks it at run
# time); only where the compiler targets x86-64 and takes GCC's flags
X86_64 = platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"
ISA_ARGS = {"training_avx2": ["-mavx2"]}

DEBUG = os.environ.get("FASTNN_DEBUG", "0") == "1"
NATIVE = os.environ.get("FASTNN_NATIVE", "0") == "1"
WANT_OPENMP = os.environ.get("FASTNN_OPENMP", "1") != "0"


def compiler_supports_openmp(compiler):
    """Try to compile and link a small OpenMP program with this compiler."""
    source = textwrap.dedent("""
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            return omp_get_max_threads() > 0 ? 0 : 1;
        }
    """)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_check.c")
        with open(src, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, os.path.join(tmp, "omp_check"),
                                     extra_postargs=["-fopenmp"])
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    def build_extensions(self):
        use_openmp = WANT_OPENMP and self.compiler.compiler_type != "msvc" \
            and compiler_supports_openmp(self.compiler)
        print(f"fastnn: building {'with' if use_openmp else 'without'} OpenMP"
              f"{', -march=native' if NATIVE else ''}{', debug checks' if DEBUG else ''}",
              file=sys.stderr)
        for ext in self.extensions:
            if use_openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
        super().build_extensions()


def extensions():
    # No FMA contraction: C arithmetic stays identical to NumPy's and to itself across
    # -march. No errno from sqrt (nothing reads it): lets sqrt loops vectorise. No
    # floating-point traps (nothing enables them): lets gcc turn a compare-and-select
    # into vector code, as in csrc/fastnn_exp.h. Results are IEEE-identical either way;
    # -ffast-math is never used.
    compile_args = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off",
                                                       "-fno-math-errno",
                                                       "-fno-trapping-math"]
    if NATIVE:
        compile_args.append("-march=native")
    exts = [
        Extension(
            f"fastnn._kernels.{name}",
            [f"fastnn/_kernels/{name}.pyx"],
            include_dirs=[numpy.get_include(), "csrc"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=compile_args + ISA_ARGS.get(name, []),
            extra_link_args=[],
        )
        for name in KERNELS
        if (HERE / "fastnn" / "_kernels" / f"{name}.pyx").exists()
        and (X86_64 or name not in ISA_ARGS)
    ]
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "cdivision": not DEBUG,
        "embedsignature": True,
    }
    return cythonize(exts, compiler_directives=directives, include_path=["fastnn/_kernels"])


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
