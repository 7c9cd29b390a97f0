"""The benchmark runner: wrong kernels are reported as failures (never as times),
every op family's case builder matches the kernel contract, the JSON output is
stable, and the CLI runs (`fastconv bench --quick`, `fastconv info`)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from fastconv import dispatch
from fastconv.bench import report
from fastconv.bench.cases import CASES_DIR, load_cases, load_file, param_shapes
from fastconv.bench.runner import RECORD_KEYS, Config, run
from fastconv.bench.specs import SPECS
from fastconv.bench.timing import Budget, summarize

TINY = [
    {"op": "conv2d", "name": "conv_tiny", "params": {"N": 2, "C": 4, "H": 6, "W": 5, "K": 3, "R": 3, "S": 3,
                                                     "stride": 1, "pad": 1, "dilation": 1, "groups": 1, "bias": 1}},
    {"op": "conv2d", "name": "dw_tiny", "params": {"N": 2, "C": 4, "H": 6, "W": 6, "K": 4, "R": 3, "S": 3,
                                                   "stride": 2, "pad": 1, "dilation": 1, "groups": 4, "bias": 0}},
    {"op": "max_pool2d", "name": "mp", "params": {"shape": [2, 3, 7, 7], "kernel_size": 3, "stride": 2, "padding": 1}},
    {"op": "avg_pool2d", "name": "ap", "params": {"shape": [2, 3, 6, 6], "kernel_size": 2, "stride": 2, "padding": 0}},
    {"op": "adaptive_avg_pool2d", "name": "gap", "params": {"shape": [2, 3, 5, 5], "output_size": [1, 1]}},
    {"op": "relu", "name": "relu", "params": {"shape": [3, 5, 4]}},
    {"op": "softmax_cross_entropy", "name": "ce", "params": {"N": 6, "C": 5}},
    {"op": "batch_norm", "name": "bn", "params": {"shape": [4, 3, 3, 3]}},
    {"op": "lstm_cell", "name": "lstm", "params": {"N": 3, "input_size": 4, "hidden_size": 5}},
    {"op": "gru_cell", "name": "gru", "params": {"N": 3, "input_size": 4, "hidden_size": 5}},
    {"op": "attention", "name": "sdpa", "params": {"B": 1, "heads": 2, "L": 5, "S": 6, "E": 4, "causal": False}},
    {"op": "attention", "name": "sdpa_causal", "params": {"B": 1, "heads": 2, "L": 5, "S": 5, "E": 4, "causal": True}},
    {"op": "sgd", "name": "sgd", "params": {"params": [[4, 3], [4]], "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}},
    {"op": "adam", "name": "adamw", "params": {"params": [[5, 2], [3]], "lr": 1e-2, "weight_decay": 1e-2,
                                               "decoupled": True}},
    {"op": "adagrad", "name": "adagrad", "params": {"params": [[6]], "lr": 0.1, "weight_decay": 0.0}},
]
FAST = Budget(min_repeats=1, max_repeats=2, budget_s=0.0, hard_cap_s=0.5, warmup=0)
PEAK = {"device": "cpu", "sgemm_gflops": 100.0, "copy_gbps": 10.0, "note": "fixed for tests"}


def _case_file(tmp_path, cases, name="tiny.json"):
    p = tmp_path / name
    p.write_text(json.dumps({"cases": cases}))
    return str(p)


@pytest.fixture
def broken_backend():
    names = []

    def make(name, fn, op="relu_forward"):
        dispatch.register(op, "cpu", name, fn)
        names.append(name)
        return name
    yield make
    for n in names:
        dispatch.unregister_backend(n)


def _rows(rep, **kw):
    return [r for r in rep["results"] if all(r[k] == v for k, v in kw.items())]


@pytest.mark.parametrize("kind", ["wrong", "nan", "shape", "raises"])
def test_wrong_kernel_is_reported_as_failure_not_time(tmp_path, broken_backend, kind):
    bad = {"wrong": lambda x: x * 2.0, "nan": lambda x: x * np.nan, "shape": lambda x: x.ravel()[:-1],
           "raises": lambda x: 1 / 0}[kind]
    name = broken_backend(f"broken_{kind}", bad)
    shapes = _case_file(tmp_path, [TINY[5]])
    rep = run(Config(ops=["relu"], backends=[name, "reference"], shapes=[shapes], torch=False, budget=FAST,
                     peak=PEAK))
    (fwd,) = _rows(rep, backend=name, direction="fwd")
    assert fwd["status"] == ("error" if kind == "raises" else "fail"), fwd
    assert fwd["median_ms"] is None and fwd["gbps"] is None and fwd["speedup_vs_torch"] is None
    assert fwd["message"]
    if kind == "raises":
        assert "ZeroDivisionError" in fwd["message"]
    else:
        assert fwd["rel_err"] > fwd["tol"]
    # the op the broken backend lacks is 'n/a', not an error; the reference itself passes
    assert _rows(rep, backend=name, direction="bwd")[0]["status"] == "n/a"
    assert {r["status"] for r in _rows(rep, backend="reference")} == {"ok"}
    # the terminal table shows the failure, with no time in its row
    (line,) = [ln for ln in report.table(rep).splitlines() if name in ln and " fwd " in ln]
    assert fwd["status"] in line and "ms" not in line.split(fwd["status"], 1)[1]


def test_correct_registered_kernel_passes(tmp_path, broken_backend):
    name = broken_backend("good_relu", lambda x: np.maximum(x, 0))
    rep = run(Config(ops=["relu"], backends=[name], shapes=[_case_file(tmp_path, [TINY[5]])], torch=False,
                     budget=FAST, peak=PEAK))
    (fwd,) = _rows(rep, direction="fwd")
    assert fwd["status"] == "ok" and fwd["rel_err"] == 0.0 and fwd["median_ms"] > 0 and fwd["gbps"] > 0


def test_every_family_builds_and_validates_with_reference(tmp_path):
    """The case builders call each kernel as the contract says: the reference,
    in float32, matches itself in float64 for every op and direction."""
    rep = run(Config(backends=["reference"], shapes=[_case_file(tmp_path, TINY)], torch=False, budget=FAST,
                     peak=PEAK))
    got = {(r["op"], r["direction"], r["case"]): r for r in rep["results"]}
    expect = {(c["op"], d, c["name"]) for c in TINY for d in SPECS[c["op"]].directions}
    assert set(got) == expect
    bad = {k: (r["status"], r["message"]) for k, r in got.items() if r["status"] != "ok"}
    assert not bad
    for r in got.values():
        assert r["rel_err"] <= r["tol"] and r["median_ms"] > 0
        assert (r["gflops"] or 0) > 0 if r["bound"] == "flops" else (r["gbps"] or 0) > 0


def test_torch_counterparts_build_and_run():
    torch = pytest.importorskip("torch")
    from fastconv.bench import torch_ref

    rng = np.random.default_rng(0)
    for c in TINY:
        spec = SPECS[c["op"]]
        data = spec.make(c["params"], rng)
        for d in spec.directions:
            builders = torch_ref.builders(c["op"], d, data, c["params"], "float32", "cpu")
            assert builders, (c["op"], d)
            for variant, build in builders.items():
                if variant == "torch fused":
                    continue  # fused optimizers need a torch build that has them
                fn = build()
                out = fn()
                assert out is None or isinstance(out, (torch.Tensor, tuple, list)), (c["op"], d, variant)


def test_json_schema_is_stable(tmp_path, broken_backend):
    name = broken_backend("broken_schema", lambda x: x)
    rep = run(Config(ops=["relu"], backends=[name], shapes=[_case_file(tmp_path, [TINY[5]])], budget=FAST,
                     peak=PEAK))
    assert set(rep) == {"schema_version", "tool", "created_utc", "machine", "peak", "config",
                        "backends_unavailable", "elapsed_s", "load_avg_end", "results"}
    assert rep["schema_version"] == 1
    assert set(rep["machine"]) == {"cpu_model", "cpu_isa", "cpu_count", "threads", "omp_wait_policy", "platform", "blas", "git_commit",
                                   "versions", "gpu", "load_avg"}
    assert set(rep["peak"]) >= {"device", "sgemm_gflops", "copy_gbps"}
    assert RECORD_KEYS == (
        "op", "direction", "case", "set", "backend", "device", "dtype", "status", "message",
        "rel_err", "tol", "median_ms", "q25_ms", "q75_ms", "iqr_ms", "min_ms", "repeats",
        "flops", "bytes", "gflops", "gbps", "bound", "peak_fraction",
        "torch_ms", "torch_variant", "torch_variants", "speedup_vs_torch", "params")
    for r in rep["results"]:
        assert tuple(r) == RECORD_KEYS
    back = json.loads(report.to_json(rep))
    assert [tuple(r) for r in back["results"]] == [RECORD_KEYS] * len(rep["results"])
    paths = report.write_all(rep, tmp_path / "out")
    md = paths["markdown"].read_text()
    assert paths["png"].stat().st_size > 1000 and "| op |" in md
    assert "| relu.fwd | broken_schema | 0 / 1 | fail |" in md  # per-kernel summary (identity is wrong)


def test_case_files_load_and_are_consistent():
    files = sorted(p.name for p in CASES_DIR.glob("*") if p.suffix in (".csv", ".json") and
                   not p.name.startswith("params_"))
    assert {"conv_cpu.csv", "conv_gpu.csv", "conv_resnet.csv", "conv_cifar.csv", "conv_lenet.csv",
            "conv_depthwise.csv", "conv_alexnet.csv", "conv_deepbench.csv", "ops_cpu.json", "ops_gpu.json"} <= set(files)
    for f in files:
        cases = load_file(f)
        assert cases, f
        for c in cases:
            assert c.op in SPECS, (f, c.op)
            if c.op == "conv2d":
                p = c.params
                assert p["C"] % p["groups"] == 0 and p["K"] % p["groups"] == 0
                assert min(SPECS["conv2d"].geom(p)[4:]) > 0, (f, c.name)
    for dev in ("cpu", "cuda"):
        ops = {c.op for c in load_cases(dev)}
        assert ops == set(SPECS), (dev, set(SPECS) - ops)
        quick_ops = {c.op for c in load_cases(dev, quick=True)}
        assert quick_ops == set(SPECS)
    assert len(param_shapes("resnet18")) == 62 and sum(math.prod(s) for s in param_shapes("resnet18")) == 11689512
    assert len(param_shapes("resnet50")) == 161 and sum(math.prod(s) for s in param_shapes("resnet50")) == 25557032
    cpu = {c.name: c.params for c in load_file("conv_cpu.csv")}
    assert cpu["res2_3x3"] == {"N": 8, "C": 64, "H": 56, "W": 56, "K": 64, "R": 3, "S": 3, "stride": 1, "pad": 1,
                               "dilation": 1, "groups": 1, "bias": 0}


def test_summarize_median_iqr():
    st = summarize([0.004, 0.001, 0.002, 0.003, 0.100])
    assert st.median_ms == pytest.approx(3.0) and st.iqr_ms == pytest.approx(2.0) and st.min_ms == pytest.approx(1.0)
    assert st.repeats == 5


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "fastconv.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_bench_quick_smoke(tmp_path):
    shapes = _case_file(tmp_path, [dict(TINY[5], quick=True), dict(TINY[0], quick=True)])
    out = tmp_path / "res"
    p = _cli("bench", "--quick", "--ops", "relu,conv", "--shapes", shapes, "--out", str(out), "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "relu" in p.stdout and "median ms" in p.stdout and "measured peak" in p.stdout
    rep = json.loads((out / "bench.json").read_text())
    assert rep["config"]["quick"] and {r["op"] for r in rep["results"]} == {"relu", "conv2d"}
    assert all(r["status"] in ("ok", "n/a") for r in rep["results"])
    ok = [r for r in rep["results"] if r["status"] == "ok"]
    assert ok and all(r["median_ms"] > 0 and r["repeats"] >= 1 for r in ok)
    if rep["config"]["torch"]:  # PyTorch timed in the same run, interleaved with the kernel
        assert all(r["torch_ms"] > 0 and r["speedup_vs_torch"] > 0 for r in ok)
    assert (out / "bench.png").exists() and (out / "bench.md").exists()


def test_cli_bench_errors_are_clear(tmp_path):
    from fastconv.cli import main

    assert main(["bench", "--shapes", str(tmp_path / "missing.csv"), "-q"]) == 2
    if not dispatch.gpu_status()[0]:
        assert main(["bench", "--device", "cuda", "--quick", "-q"]) == 2


def test_cli_list_and_info():
    p = _cli("bench", "--list", "--quick", "--ops", "conv")
    assert p.returncode == 0 and "conv2d" in p.stdout and "lenet_c3" in p.stdout
    p = _cli("info")
    assert p.returncode == 0, p.stderr
    for name in ("reference", "cython", "numba_cuda", "cupy", "threads", "GPU"):
        assert name in p.stdout
    p = _cli("info", "--json")
    doc = json.loads(p.stdout)
    assert {r["backend"] for r in doc["backends"]} >= {"reference", "cython"}
    assert doc["backends"][0]["available"] is True and doc["threads"] >= 1
    p = _cli()
    assert p.returncode == 2 and "bench" in p.stdout and "info" in p.stdout


def test_pytest_benchmark_suite_runs(tmp_path):
    """`pytest bench/ --benchmark-only` over a tiny case file: kernels validated, then timed,
    PyTorch beside them, grouped per op/direction/shape."""
    import os
    from pathlib import Path

    pytest.importorskip("pytest_benchmark")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FASTCONV_BENCH_SHAPES=_case_file(tmp_path, [dict(TINY[5], quick=True)]),
               FASTCONV_BENCH_OPS="relu", FASTCONV_BENCH_BACKENDS="reference,torch")
    out = tmp_path / "pb.json"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "bench"),
                        "--benchmark-only", "--benchmark-min-rounds=1", "--benchmark-max-time=0.01",
                        f"--benchmark-json={out}"], capture_output=True, text=True, env=env, cwd=root,
                       timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    doc = json.loads(out.read_text())
    got = {(b["group"], b["extra_info"]["backend"]) for b in doc["benchmarks"]}
    assert got == {("relu.fwd relu", "reference"), ("relu.bwd relu", "reference"),
                   ("relu.fwd relu", "torch"), ("relu.bwd relu", "torch")}

