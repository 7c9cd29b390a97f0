"""Benchmark cases as data: load CSV/JSON case files from ``bench/cases``.

A case is one (op, name, params) row.  Conv CSV files hold one convolution
per row (``name,N,C,H,W,K,R,S,stride,pad,dilation,groups,bias,quick,source``;
a CSV with an ``op`` column may hold other ops whose params are its other
columns).  JSON files hold ``{"cases": [{"op", "name", "quick", "params"}]}``.
Rows with ``quick`` true form the ``--quick`` subset.

The input arrays, kernel calls and FLOP/byte counts per op family live in
``fastconv.bench.specs``.
"""
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# <repo>/bench/cases, beside the package in a source checkout (editable install).
CASES_DIR = Path(os.environ.get("FASTCONV_BENCH_CASES", Path(__file__).resolve().parents[2] / "bench" / "cases"))

# The case files run by default on each device (others through --shapes NAME).
DEFAULT_FILES = {
    "cpu": ["conv_cpu.csv", "ops_cpu.json"],
    "cuda": ["conv_gpu.csv", "ops_gpu.json"],
}

# `--ops` names and the bench ops they select.
OP_ALIASES = {
    "conv": ["conv2d"],
    "pool": ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"],
    "activation": ["relu"],
    "cross_entropy": ["softmax_cross_entropy"],
    "loss": ["softmax_cross_entropy"],
    "norm": ["batch_norm"],
    "rnn": ["lstm_cell", "gru_cell"],
    "sdpa": ["attention"],
    "optim": ["sgd", "adam", "adagrad"],
}

_INT_FIELDS = ("N", "C", "H", "W", "K", "R", "S", "stride", "pad", "dilation", "groups", "bias")


@dataclass
class Case:
    op: str
    name: str
    params: dict
    quick: bool = False
    source: str = ""
    set: str = ""
    extra: dict = field(default_factory=dict)

    def key(self):
        return (self.op, self.name, self.set)


def _truthy(v):
    return str(v).strip().lower() in ("1", "true", "yes", "y")


def _num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def resolve_file(name):
    """A case file by path, or by name inside ``bench/cases`` (extension optional)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (CASES_DIR / name, CASES_DIR / f"{name}.csv", CASES_DIR / f"{name}.json",
                 CASES_DIR / f"conv_{name}.csv", CASES_DIR / f"ops_{name}.json"):
        if cand.is_file():
            return cand
    known = sorted(f.name for f in CASES_DIR.glob("*")) if CASES_DIR.is_dir() else []
    raise FileNotFoundError(f"case file {name!r} not found (looked in {CASES_DIR}; known: {known})")


def load_file(path):
    """Cases from one CSV or JSON file."""
    path = resolve_file(path)
    setname = path.stem
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        rows = doc["cases"] if isinstance(doc, dict) else doc
        out = []
        for i, r in enumerate(rows):
            if "op" not in r or "params" not in r:
                raise ValueError(f"{path}: case {i} needs 'op' and 'params' keys, got {sorted(r)}")
            out.append(Case(op=r["op"], name=r.get("name", f"{r['op']}_{i}"), params=dict(r["params"]),
                            quick=bool(r.get("quick", False)), source=r.get("source", ""), set=setname))
        return out
    if path.suffix != ".csv":
        raise ValueError(f"case file {path}: expected .csv or .json")
    out = []
    with open(path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f)):
            r = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k}
            op = r.pop("op", "conv2d") or "conv2d"
            name = r.pop("name", "") or f"{op}_{i}"
            quick = _truthy(r.pop("quick", "0"))
            source = r.pop("source", "")
            if op == "conv2d":
                missing = [k for k in ("N", "C", "H", "K", "R") if not r.get(k)]
                if missing:
                    raise ValueError(f"{path}: row {i + 2} ({name}) lacks {missing}")
                p = {k: int(r[k]) for k in _INT_FIELDS if r.get(k) not in (None, "")}
                p.setdefault("W", p["H"])
                p.setdefault("S", p["R"])
                for k, d in (("stride", 1), ("pad", 0), ("dilation", 1), ("groups", 1), ("bias", 0)):
                    p.setdefault(k, d)
            else:
                p = {k: _num(v) for k, v in r.items() if v not in (None, "")}
            out.append(Case(op=op, name=name, params=p, quick=quick, source=source, set=setname))
    return out


def expand_ops(ops):
    """['conv', 'relu'] -> ['conv2d', 'relu'] (None stays None: all ops)."""
    if not ops:
        return None
    out = []
    for o in ops:
        for part in str(o).split(","):
            part = part.strip()
            if part:
                out.extend(OP_ALIASES.get(part, [part]))
    return list(dict.fromkeys(out))


def load_cases(device="cpu", files=None, ops=None, quick=False):
    """Cases for a run: the given files (or the device's defaults), filtered by op and --quick."""
    files = files or DEFAULT_FILES[device]
    cases = []
    for f in files:
        cases.extend(load_file(f))
    wanted = expand_ops(ops)
    if wanted is not None:
        cases = [c for c in cases if c.op in wanted]
    if quick:
        q = [c for c in cases if c.quick]
        # A user file with no quick marks: take its first case per op.
        seen = set()
        for c in cases:
            if c.op not in {x.op for x in q} and c.op not in seen:
                seen.add(c.op)
                q.append(c)
        cases = [c for c in cases if c in q]
    return cases


_PARAM_LISTS = {}


def param_shapes(name):
    """Parameter shapes of a model (``params_resnet.json``) for optimizer cases, or an explicit list."""
    if isinstance(name, list):
        return [tuple(s) for s in name]
    if not _PARAM_LISTS:
        for f in sorted(CASES_DIR.glob("params_*.json")):
            for k, v in json.loads(f.read_text()).items():
                if not k.startswith("_"):
                    _PARAM_LISTS[k] = [tuple(s) for s in v]
    if name not in _PARAM_LISTS:
        raise KeyError(f"unknown parameter list {name!r}; known: {sorted(_PARAM_LISTS)}")
    return _PARAM_LISTS[name]
