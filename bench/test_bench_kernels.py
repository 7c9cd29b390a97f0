"""Every op x direction x case x backend through pytest-benchmark (see conftest.py)."""
import os

import numpy as np
import pytest

from fastconv.bench import torch_ref
from fastconv.bench.runner import ValidationFailed, prepare_validated
from fastconv.bench.specs import SPECS, KernelMissing

DEVICE = os.environ.get("FASTCONV_BENCH_DEVICE", "cpu")  # as in conftest.py


def _sync():
    if DEVICE == "cuda":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def _torch_sync():
    if DEVICE == "cuda":
        import torch

        torch.cuda.synchronize()


def test_kernel(benchmark, bench_item):
    case, direction, backend = bench_item
    benchmark.group = f"{case.op}.{direction} {case.name}"
    benchmark.extra_info.update(op=case.op, direction=direction, case=case.name, backend=backend,
                                params=case.params)
    spec = SPECS[case.op]
    flops, nbytes = spec.work(case.params, direction, 4)
    benchmark.extra_info.update(flops=flops, bytes=nbytes)
    if backend.startswith("torch"):
        if not torch_ref.available():
            pytest.skip("PyTorch is not installed")
        data = spec.make(case.params, np.random.default_rng(0))
        builders = torch_ref.builders(case.op, direction, data, case.params, "float32", DEVICE)
        if backend not in builders:
            pytest.skip(f"no PyTorch counterpart named {backend!r}")
        try:
            fn = builders[backend]()
        except (RuntimeError, TypeError) as exc:  # e.g. a fused optimizer this build lacks
            pytest.skip(f"{backend} unavailable in this PyTorch: {exc}")
        fn()
        benchmark(lambda: (fn(), _torch_sync()))
        return
    try:
        fn, err = prepare_validated(case, direction, backend, DEVICE)
    except KernelMissing as exc:
        pytest.skip(f"n/a: {exc}")
    except ValidationFailed as exc:
        pytest.fail(str(exc))
    benchmark.extra_info["rel_err"] = err
    benchmark(lambda: (fn(), _sync()))
