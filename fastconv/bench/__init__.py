"""Benchmarks: every op x backend x shape, validated against the float64 reference,
timed, and compared with PyTorch measured in the same run.

    fastconv bench --quick                      # terminal table
    fastconv bench --ops conv --out results/    # + JSON, Markdown, PNG chart

Modules: cases (case files), specs (inputs and kernel calls per op family),
timing, peak (machine limits), torch_ref (PyTorch counterparts), runner (the
loop), report (table, JSON, Markdown, chart), machine (machine description).
"""
from .cases import Case, load_cases
from .runner import Config, run

__all__ = ["Case", "Config", "load_cases", "run"]
