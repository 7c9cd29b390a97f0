"""``fastconv demo`` / ``make run``: LeNet-5 on scikit-learn's digits (resized
to 32x32) with fastconv kernels on the best available device, then the quick
benchmark table.  Writes the checkpoint, history, curves, confusion/ROC/PR
plots and report.json to ``runs/demo``."""
import sys
import time

# Measured on the 2-core dev box (CPU seconds, all threads): 6 epochs with crop+rotation
# augmentation take ~37 s and reach 99.3 % test accuracy (269 test images); without
# augmentation 6-10 epochs stay at 97.8 %.
DEMO = dict(model="lenet5", dataset="digits", epochs=6, batch_size=32, lr=3e-3, optimizer="adam",
            scheduler="cosine", augment=True, seed=0, fractions=(0.75, 0.1, 0.15))


def run_bench(device, log=print, ops=None, torch=True):
    """The quick benchmark table (``ops`` restricts it, e.g. ['relu']); returns the report, or
    None when it could not run (the reason is logged) or ran in a fresh process."""
    try:
        from .bench import report
        from .bench.runner import Config, run
        from .bench.timing import Budget
    except Exception as exc:  # the benchmark package is optional for the demo
        log(f"quick benchmark skipped: fastconv.bench unavailable ({type(exc).__name__}: {exc})")
        return None
    from .bench.runner import gomp_loaded, policy_is_ours
    if policy_is_ours() and gomp_loaded():
        # training loaded libgomp under fastconv's PASSIVE policy, which PyTorch would share:
        # a fresh process lets the benchmark run both under OpenMP's default (see runner)
        import os
        import subprocess
        cmd = [sys.executable, "-c", "import sys; from fastconv.cli import main; sys.exit(main(sys.argv[1:]))",
               "bench", "--quick", "--device", device, "-q"] + (["--ops", *ops] if ops else []) + ([] if torch else ["--no-torch"])
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            log(f"quick benchmark failed: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
            return None
        log(out.stdout.rstrip())
        return None
    try:
        rep = run(Config(device=device, ops=ops, quick=True, budget=Budget.quick(), torch=torch,
                         progress=lambda s: print(s, file=sys.stderr, flush=True)))
    except Exception as exc:
        log(f"quick benchmark failed: {type(exc).__name__}: {exc}")
        return None
    log(report.table(rep))
    return rep


def main(epochs=None, out="runs/demo", device="auto", bench=True, progress="auto", log=print, bench_ops=None):
    from .cli_train import resolve_device, summary_line, train_model

    device = resolve_device(device)
    cfg = dict(DEMO, out=out, device=device, progress=progress, log=log)
    if epochs is not None:
        cfg["epochs"] = epochs
    t0 = time.perf_counter()
    rep, _ = train_model(**cfg)
    log(f"LeNet-5 on digits 32x32 ({device}, {time.perf_counter() - t0:.1f} s): {summary_line(rep)}")
    log(f"wrote last.ckpt, best.ckpt, history.json, curves.png, confusion_matrix.png, roc.png, pr.png, "
        f"report.json to {out}")
    if bench:
        log("quick benchmark:")
        run_bench(device, log, bench_ops)
    return 0
