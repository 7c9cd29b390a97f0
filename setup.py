"""Build fastconv: pure-Python package + Cython CPU kernels (OpenMP).

Portable by default (no -march=native). Set FASTCONV_NATIVE=1 to opt in to
-march=native for a machine-specific build.
"""
import glob
import os
import sys

import numpy
from setuptools import Extension, find_packages, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - Cython is a build requirement
    cythonize = None

compile_args = ["-O3", "-fopenmp", "-ffast-math", "-fno-finite-math-only"]
link_args = ["-fopenmp"]
if os.environ.get("FASTCONV_NATIVE") == "1":
    compile_args.append("-march=native")
if sys.platform == "darwin":  # pragma: no cover
    compile_args = [a for a in compile_args if a != "-fopenmp"] + ["-Xpreprocessor", "-fopenmp"]
    link_args = ["-lomp"]

# FASTCONV_ONLY=conv,pool builds just those modules and their _conv_*/_pool_* helpers
# (handy while iterating on one).
only = {m for m in os.environ.get("FASTCONV_ONLY", "").split(",") if m}

extensions = []
for pyx in sorted(glob.glob(os.path.join("kernels", "cython", "*.pyx"))):
    name = os.path.splitext(os.path.basename(pyx))[0]
    # a family's private helper modules (_conv_direct, ...) are built with it
    if only and name not in only and not any(name.startswith(f"_{m}_") for m in only):
        continue
    extensions.append(
        Extension(
            "fastconv.kernels.cython." + name,
            [pyx],
            include_dirs=[numpy.get_include()],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
    )

if cythonize is not None and extensions:
    extensions = cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        nthreads=int(os.environ.get("FASTCONV_BUILD_JOBS", "2")),
    )

# `kernels/` is installed as `fastconv.kernels` (the layout users were promised).
packages = ["fastconv"] + ["fastconv." + p for p in find_packages("fastconv")]
packages += ["fastconv.kernels"] + ["fastconv.kernels." + p for p in find_packages("kernels")]

setup(
    packages=packages,
    package_dir={"fastconv": "fastconv", "fastconv.kernels": "kernels"},
    ext_modules=extensions,
)
