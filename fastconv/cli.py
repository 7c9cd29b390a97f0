"""The ``fastconv`` command: ``fastconv <subcommand> ...``.

Subcommands live in ``COMMANDS``: name -> either a tuple
``(help, add_arguments, run)`` or the dotted name of a module that defines
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.  Modules are
imported only when their subcommand runs (so ``fastconv info`` does not import
torch).  To add one, add a line to ``COMMANDS`` (or call ``register``)::

    COMMANDS["train"] = "fastconv.train.cli"
"""
import argparse
import importlib
import sys


# ---------------------------------------------------------------- info
def _info_args(p):
    p.add_argument("--json", action="store_true", help="print the information as JSON")


def _info_run(args):
    import json
    import platform

    import numpy as np

    from . import __version__, dispatch
    from .config import get_num_threads

    rows = dispatch.info()
    gpu_ok, gpu_why = dispatch.gpu_status()
    doc = {"fastconv": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "threads": get_num_threads(), "gpu": {"available": gpu_ok, ("name" if gpu_ok else "reason"): gpu_why},
           "default_order": dict(dispatch.DEFAULT_ORDER), "backends": rows}
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"fastconv {__version__}  (python {doc['python']}, numpy {doc['numpy']})")
    print(f"CPU threads: {doc['threads']}  (fastconv.set_num_threads / OMP_NUM_THREADS)")
    print(f"GPU: {gpu_why if gpu_ok else 'none - ' + gpu_why}")
    print("backends:")
    w = max(len(r["backend"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        print(f"  {r['backend']:<{w}}  devices {','.join(r['devices']):<9}  {state}")
    for dev, order in dispatch.DEFAULT_ORDER.items():
        print(f"default order on {dev}: {' -> '.join(order)}")
    return 0


# ---------------------------------------------------------------- bench
def _bench_args(p):
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--ops", nargs="+", metavar="OP",
                   help="ops or families (comma or space separated): conv2d, max_pool2d, avg_pool2d, "
                        "adaptive_avg_pool2d, relu, softmax_cross_entropy, batch_norm, lstm_cell, gru_cell, "
                        "attention, sgd, adam, adagrad; groups: conv, pool, rnn, optim, loss, norm")
    p.add_argument("--backends", nargs="+", metavar="NAME",
                   help="backends to time (default: every non-reference backend serving the device)")
    p.add_argument("--shapes", action="append", metavar="FILE",
                   help="case file (CSV/JSON path, or a name in bench/cases such as resnet, deepbench, "
                        "alexnet, lenet, depthwise, cifar, gpu); repeatable; default: the device's set")
    p.add_argument("--quick", action="store_true", help="the quick subset, short timing budget (< 2 min)")
    p.add_argument("--out", metavar="DIR", help="also write bench.json, bench.md and bench.png into DIR")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for fastconv, BLAS and PyTorch alike (default: fastconv's setting)")
    p.add_argument("--budget", type=float, metavar="S", help="seconds of timed runs per case (default 1, quick 0.15)")
    p.add_argument("--hide-na", action="store_true", help="leave ops a backend does not implement out of the table")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def _bench_run(args):
    from .bench import report
    from .bench.cases import load_cases
    from .bench.runner import Config, run
    from .bench.timing import Budget

    ops = [o for part in (args.ops or []) for o in part.split(",") if o] or None
    backends = [b for part in (args.backends or []) for b in part.split(",") if b] or None
    if args.list:
        for c in load_cases(args.device, args.shapes, ops, args.quick):
            print(f"{c.set:<16} {c.op:<22} {c.name:<32} {c.params}")
        return 0
    budget = Budget.quick(args.device) if args.quick else Budget()
    if args.budget is not None:
        budget.budget_s = args.budget
        budget.hard_cap_s = max(budget.hard_cap_s, 4 * args.budget)
    cfg = Config(device=args.device, ops=ops, backends=backends, shapes=args.shapes, quick=args.quick,
                 dtype=args.dtype, torch=not args.no_torch, seed=args.seed, budget=budget, threads=args.threads,
                 progress=None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    try:
        rep = run(cfg)
    except (RuntimeError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"fastconv bench: {exc}", file=sys.stderr)
        return 2
    print(report.table(rep, hide_na=args.hide_na))
    if args.out:
        paths = report.write_all(rep, args.out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    bad = [r for r in rep["results"] if r["status"] in ("fail", "error")]
    return 1 if bad else 0


COMMANDS = {
    "info": ("list backends, devices, availability and threads", _info_args, _info_run),
    "bench": ("benchmark kernels against the reference and PyTorch", _bench_args, _bench_run),
}


# train / eval / tune / demo (fastconv/cli_train.py; imports nothing heavy at load time)
from .cli_train import COMMANDS as _TRAIN_COMMANDS  # noqa: E402

COMMANDS.update(_TRAIN_COMMANDS)


def register(name, help_or_module, add_arguments=None, run=None):
    """Add a subcommand: ``register(name, "pkg.module")`` or ``register(name, help, add_arguments, run)``."""
    COMMANDS[name] = help_or_module if add_arguments is None else (help_or_module, add_arguments, run)


def _resolve(entry):
    if isinstance(entry, str):
        mod = importlib.import_module(entry)
        return getattr(mod, "HELP", ""), mod.add_arguments, mod.run
    return entry


def build_parser():
    parser = argparse.ArgumentParser(prog="fastconv", description="fastconv: hand-optimized deep-learning kernels")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, entry in COMMANDS.items():
        if isinstance(entry, str):
            # help text without importing the module (its import may be heavy)
            sp = sub.add_parser(name, help=f"(see fastconv {name} --help)", add_help=False)
            sp.add_argument("rest", nargs=argparse.REMAINDER)
        else:
            help_, add_arguments, _ = entry
            sp = sub.add_parser(name, help=help_, description=help_)
            add_arguments(sp)
    return parser


def main(argv=None):
    try:
        return _main(argv)
    except BrokenPipeError:  # `fastconv bench | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    from fastconv import config

    config.keep_heap()  # our own process: keep freed activations for reuse (see config.keep_heap)
    if argv and argv[0] in COMMANDS and isinstance(COMMANDS[argv[0]], str):
        # lazily imported subcommand: give it its own parser
        help_, add_arguments, run = _resolve(COMMANDS[argv[0]])
        p = argparse.ArgumentParser(prog=f"fastconv {argv[0]}", description=help_)
        add_arguments(p)
        return run(p.parse_args(argv[1:])) or 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return _resolve(COMMANDS[args.command])[2](args) or 0


if __name__ == "__main__":
    sys.exit(main())
