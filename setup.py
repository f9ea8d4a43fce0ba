"""acnkit's two compiled pieces, both optional: the fused exact-search kernel
(acnkit/_fused_knn.c) and the exact elementwise kernels of portable coding
(acnkit/exact/_kernels.c). If one cannot be built here (no C compiler), acnkit installs
without it: the ``torch`` searcher uses its torch kernel, the exact functions their numpy
definitions (the same bits, more slowly). Metadata lives in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "acnkit._fused_knn", ["acnkit/_fused_knn.c"],
    # Built on the machine that runs it (pip install from source): its own vector units.
    # OpenMP: the threads are those of the runtime torch has already loaded (same soname).
    extra_compile_args=["-O3", "-march=native", "-fno-math-errno", "-fopenmp"],
    extra_link_args=["-fopenmp"],
    optional=True,
), Extension(
    "acnkit.exact._kernels", ["acnkit/exact/_kernels.c"],
    # The IEEE operations exactly as written: no fused multiply-add (-ffp-contract=off),
    # no reassociation or reciprocal tricks (no -ffast-math). Without traps and errno the
    # loops vectorise (each lane the same rounding); the kernels pick the CPU's vectors at
    # run time, so no -march=native.
    extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math",
                        "-fno-unsafe-math-optimizations", "-fexcess-precision=standard",
                        "-fno-trapping-math", "-fno-math-errno"],
    optional=True,
)])
