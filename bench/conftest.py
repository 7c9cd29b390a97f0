"""pytest-benchmark over the same cases as `fastconv bench`.

    pytest bench/ --benchmark-only                       # the --quick case set on the CPU
    FASTCONV_BENCH_FULL=1 pytest bench/ --benchmark-only # the device's full default set
    FASTCONV_BENCH_SHAPES=resnet,lenet FASTCONV_BENCH_OPS=conv pytest bench/ --benchmark-only
    FASTCONV_BENCH_DEVICE=cuda ...                       # GPU backends (CuPy arrays)

One test per op x direction x case x backend (PyTorch included as backend
'torch', optimizers as 'torch for-loop/foreach/fused'); benchmarks are grouped
per op, direction and shape, so the comparison table reads per shape.  Each
fastconv kernel is validated against the float64 reference before it is timed;
a mismatch fails the test.  These files are not part of `pytest tests`.
"""
import os

from fastconv import dispatch
from fastconv.bench.cases import load_cases
from fastconv.bench.runner import default_backends
from fastconv.bench.specs import SPECS

DEVICE = os.environ.get("FASTCONV_BENCH_DEVICE", "cpu")
FULL = os.environ.get("FASTCONV_BENCH_FULL", "") == "1"
SHAPES = [s for s in os.environ.get("FASTCONV_BENCH_SHAPES", "").split(",") if s] or None
OPS = [s for s in os.environ.get("FASTCONV_BENCH_OPS", "").split(",") if s] or None
BACKENDS = [s for s in os.environ.get("FASTCONV_BENCH_BACKENDS", "").split(",") if s] or None


def _backends():
    names = BACKENDS or default_backends(DEVICE)
    return [b for b in names if b == "torch" or dispatch.available(b)[0]]


def bench_items():
    items = []
    cases = load_cases(DEVICE, SHAPES, OPS, quick=not FULL)
    for case in cases:
        spec = SPECS.get(case.op)
        if spec is None:
            continue
        torch_names = (["torch for-loop", "torch foreach", "torch fused"] if spec.directions == ("step",)
                       else ["torch"])
        with_torch = not BACKENDS or "torch" in BACKENDS
        for d in spec.directions:
            for b in [b for b in _backends() if b != "torch"] + (torch_names if with_torch else []):
                items.append((case, d, b))
    return items


def pytest_configure(config):
    try:
        import torch

        from fastconv import get_num_threads

        torch.set_num_threads(get_num_threads())
    except ImportError:
        pass


def pytest_generate_tests(metafunc):
    if "bench_item" in metafunc.fixturenames:
        items = bench_items()
        metafunc.parametrize("bench_item", items,
                             ids=[f"{c.op}.{d}-{c.name}-{b.replace(' ', '_')}" for c, d, b in items])
