"""fastconv.config: keep_heap (glibc malloc keeps freed memory; process-wide, so checked in
subprocesses) and its argument checks."""
import platform
import subprocess
import sys

import pytest

import fastconv

_PROBE = """
import resource, sys, numpy as np
import fastconv
on = sys.argv[1] == "1"
if on:
    assert fastconv.config.keep_heap() is True
def step():  # a step's activations: arrays of 1-4 MiB, touched, then all freed
    arrs = [np.empty(mib << 18, np.float32) for mib in (1, 2, 3, 4)]
    for a in arrs:
        a.fill(1.0)
    del arrs, a
step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(on):
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if on else "0"], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="keep_heap acts on glibc's malloc only")
def test_keep_heap_stops_refaulting_freed_arrays():
    off, on = _faults(False), _faults(True)
    assert off >= 10 * 1000  # glibc's defaults: most of the 2560 pages faulted back in every step
    assert on < off / 20, (on, off)


def test_keep_heap_rejects_bad_arguments():
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="keep_heap"):
            fastconv.config.keep_heap(mmap_threshold=bad)
        with pytest.raises(ValueError, match="keep_heap"):
            fastconv.config.keep_heap(trim_threshold=bad)


def test_cli_applies_keep_heap(monkeypatch):
    from fastconv import cli

    calls = []
    monkeypatch.setattr(fastconv.config, "keep_heap", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert calls == [1]


def test_blas_threads_finds_both_openblas_copies_and_restores():
    """The compiled kernels hold SciPy's OpenBLAS at one thread inside their OpenMP regions and the
    NumPy-level attention backward NumPy's: both libraries must be found (threadpoolctl is a
    dependency), lowered inside the block and restored after."""
    T = pytest.importorskip("fastconv.kernels.cython._threads")
    for which in ("scipy", "numpy"):
        lib = T.blas_threads._find(which)
        assert lib is not None, which
        before = lib.get_num_threads()
        with T.blas_threads(which, 1):
            assert lib.get_num_threads() == 1
        assert lib.get_num_threads() == before
