"""Build the Cython core. Directives are set here, once; COLLIDE_DEBUG=1 turns the checks back on.
COLLIDE_LINENUMS=1 adds #line directives so that profilers (cachegrind, perf annotate) report .pyx
lines.

docs/model.md §2.4: no -ffast-math, no FMA contraction, no -march=native, so that the compiled core's
floating point matches the numba twin and the Python reference bit for bit.
"""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("COLLIDE_DEBUG", "") not in ("", "0", "false", "False")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "nonecheck": False,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

if sys.platform == "win32":
    compile_args = ["/fp:precise"]
else:
    compile_args = ["-O2" if not DEBUG else "-O0", "-ffp-contract=off", "-fno-fast-math"]
    if DEBUG:
        compile_args.append("-g")

extensions = [
    Extension(
        "collide.engine._core",
        ["collide/engine/_core.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    ),
    # the capture reader of `collide scan`: it parses untrusted files, so its bounds checks are
    # written out in the source (every read is guarded by a length test) rather than left to DEBUG
    Extension(
        "collide.scan._reader",
        ["collide/scan/_reader.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    ),
    # the compiled twin of collide/scan/track.py (the reference), and the duplicate filter
    Extension(
        "collide.scan._track",
        ["collide/scan/_track.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, emit_linenums=bool(os.environ.get("COLLIDE_LINENUMS")),
                            force=DEBUG, quiet=True))
