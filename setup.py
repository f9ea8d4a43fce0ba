"""The one compiled piece: acnkit's fused exact-search kernel (acnkit/_fused_knn.c).

Optional: if it cannot be built here (no C compiler), acnkit installs without it and the
``torch`` searcher uses its torch kernel. Metadata lives in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "acnkit._fused_knn", ["acnkit/_fused_knn.c"],
    # Built on the machine that runs it (pip install from source): its own vector units.
    # OpenMP: the threads are those of the runtime torch has already loaded (same soname).
    extra_compile_args=["-O3", "-march=native", "-fno-math-errno", "-fopenmp"],
    extra_link_args=["-fopenmp"],
    optional=True,
)])
