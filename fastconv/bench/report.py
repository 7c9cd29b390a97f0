"""Benchmark outputs: terminal table, JSON, Markdown, PNG chart of speed-up against PyTorch."""
import json
import math
from pathlib import Path

COLUMNS = ("op", "dir", "case", "backend", "status", "rel err", "median ms", "IQR ms", "GF/s|GB/s", "%peak",
           "torch ms", "vs torch")


def _f(v, fmt):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _ms(v):
    if v is None:
        return ""
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def row_cells(r):
    ok = r.get("status") == "ok"
    if ok and r.get("bound") == "flops" and r.get("gflops"):
        rate = f"{r['gflops']:.1f} GF/s"
    elif ok and r.get("gbps"):
        rate = f"{r['gbps']:.2f} GB/s"
    else:
        rate = ""
    status = r.get("status") or ""
    if status in ("fail", "error", "skipped"):
        status += f" ({r.get('message', '')[:60]})" if r.get("message") else ""
    return [r.get("op") or "", r.get("direction") or "", r.get("case") or "", r.get("backend") or "", status,
            _f(r.get("rel_err"), ".1e") if r.get("rel_err") is not None and math.isfinite(r["rel_err"]) else
            ("inf" if r.get("rel_err") is not None else ""),
            _ms(r.get("median_ms")) if ok else "", _ms(r.get("iqr_ms")) if ok else "", rate,
            _f(100 * r["peak_fraction"], ".1f") if ok and r.get("peak_fraction") else "",
            _ms(r.get("torch_ms")) if ok else "",
            (f"{r['speedup_vs_torch']:.2f}x" if ok and r.get("speedup_vs_torch") else "")]


def header_lines(report):
    m, pk, cfg = report["machine"], report["peak"], report["config"]
    blas = m.get("blas") or {}
    la, la_end = m.get("load_avg"), report.get("load_avg_end")
    load = ""
    if la:
        load = f"  load avg {la[0]:.1f} at start, {la_end[0]:.1f} at end" if la_end else f"  load avg {la[0]:.1f}"
        if max(la[0], (la_end or la)[0]) > 1.5 * (m.get("cpu_count") or 1):
            load += " (CPU shared with other work: times are noisy)"
    lines = [f"fastconv bench  {report['created_utc']}  commit {m.get('git_commit')}  device {cfg['device']}  "
             f"dtype {cfg['dtype']}{'  (quick)' if cfg.get('quick') else ''}",
             f"CPU {m.get('cpu_model')} x{m.get('cpu_count')} ({' '.join(m.get('cpu_isa') or [])})  "
             f"threads {m.get('threads')}  "
             f"BLAS {blas.get('name')} {blas.get('version')}  torch {m['versions'].get('torch', 'not installed')}  OpenMP wait {m.get('omp_wait_policy') or '?'}"
             + load]
    if m.get("gpu"):
        g = m["gpu"]
        lines.append(f"GPU {g.get('name')} (cc {g.get('cc')}, {g.get('sms')} SMs)  driver {g.get('driver')}  "
                     f"CUDA runtime {g.get('cuda_runtime')}")
    if pk.get("sgemm_gflops"):
        lines.append(f"measured peak: SGEMM {pk['sgemm_gflops']:.1f} GFLOP/s, copy {pk['copy_gbps']:.1f} GB/s "
                     f"(%peak of compute-bound ops vs SGEMM, of memory-bound ops vs copy)")
    else:
        lines.append(f"peak not measured: {pk.get('error')}")
    for b, why in (report.get("backends_unavailable") or {}).items():
        lines.append(f"backend {b}: unavailable ({why})")
    return lines


def table(report, hide_na=False):
    """The terminal table as a string."""
    rows = [row_cells(r) for r in report["results"] if not (hide_na and r.get("status") == "n/a")]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(COLUMNS)]
    widths[4] = min(widths[4], 70)
    fmt = "  ".join(f"{{:{'<' if i < 5 else '>'}{w}}}" for i, w in enumerate(widths))
    out = header_lines(report) + ["", fmt.format(*COLUMNS), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*(c[:w] for c, w in zip(row, widths))) for row in rows]
    counts = summary_counts(report)
    out.append("")
    out.append("  ".join(f"{k}: {v}" for k, v in counts.items()) + f"   ({report.get('elapsed_s')} s)")
    return "\n".join(out)


def summary_counts(report):
    counts = {}
    for r in report["results"]:
        counts[r.get("status")] = counts.get(r.get("status"), 0) + 1
    return counts


def _jsonable(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        return _jsonable(o.item())
    return o


def to_json(report):
    return json.dumps(_jsonable(report), indent=1, sort_keys=False)


def markdown(report, hide_na=True):
    lines = ["# fastconv benchmark", ""] + [f"- {line}" for line in header_lines(report)] + [""]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in COLUMNS) + " |")
    lines.append("|" + "|".join("---" if i < 5 else "---:" for i in range(len(COLUMNS))) + "|")
    for r in report["results"]:
        if hide_na and r.get("status") == "n/a":
            continue
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r)) + " |")
    na = [r for r in report["results"] if r.get("status") == "n/a"]
    if hide_na and na:
        missing = sorted({f"{r['backend']}: {r['op']}.{r['direction']}" for r in na})
        lines += ["", f"Not implemented (n/a), {len(na)} rows: " + ", ".join(missing)]
    lines += ["", "  ".join(f"{k}: {v}" for k, v in summary_counts(report).items())]
    lines += ["", "Per kernel:", "", summary_table(report)]
    return "\n".join(lines) + "\n"


def summary_table(report):
    """Markdown: per (op, direction, backend), shapes validated, %peak and speed-up vs PyTorch
    (min-median-max over shapes)."""
    import statistics

    groups = {}
    for r in report["results"]:
        groups.setdefault((r["op"], r["direction"], r["backend"]), []).append(r)

    def span(v, fmt, unit):
        if not v:
            return ""
        v = sorted(v)
        if len(v) == 1:
            return f"{v[0]:{fmt}}{unit}"
        return f"{v[0]:{fmt}}–{statistics.median(v):{fmt}}–{v[-1]:{fmt}}{unit}"
    lines = ["| op.direction | backend | ok / shapes | % of peak (min–median–max) | vs PyTorch (min–median–max) | limit |",
             "|---|---|---:|---:|---:|---|"]
    for (op, d, b), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        if not ok:
            lines.append(f"| {op}.{d} | {b} | 0 / {len(rs)} | {', '.join(sorted({str(r['status']) for r in rs}))} | | |")
            continue
        pf = [100 * r["peak_fraction"] for r in ok if r["peak_fraction"]]
        sp = [r["speedup_vs_torch"] for r in ok if r["speedup_vs_torch"]]
        lim = "SGEMM" if ok[0]["bound"] == "flops" else "copy BW"
        lines.append(f"| {op}.{d} | {b} | {len(ok)} / {len(rs)} | {span(pf, '.1f', '%')} | {span(sp, '.2f', 'x')} | {lim} |")
    return "\n".join(lines)


def chart(report, path):
    """Horizontal bars: speed-up against PyTorch per (op, direction, case, backend); log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if r.get("status") == "ok" and r.get("speedup_vs_torch")]
    height = max(2.5, 0.28 * len(rows) + 1.5)
    fig, ax = plt.subplots(figsize=(9, height))
    if rows:
        labels = [f"{r['op']}.{r['direction']} {r['case']} [{r['backend']}]" for r in rows]
        vals = [r["speedup_vs_torch"] for r in rows]
        colors = ["tab:green" if v >= 1 else "tab:red" for v in vals]
        y = list(range(len(rows)))[::-1]
        ax.barh(y, vals, color=colors)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", lw=1)
        ax.set_xlabel("speed-up against PyTorch (torch time / fastconv time; >1 is faster)")
    else:
        ax.text(0.5, 0.5, "no validated results with a PyTorch time", ha="center", va="center")
        ax.set_axis_off()
    m = report["machine"]
    dev = (m.get("gpu") or {}).get("name") if report["config"]["device"] == "cuda" else m.get("cpu_model")
    ax.set_title(f"fastconv vs PyTorch, {dev}, {report['config']['dtype']}, commit {m.get('git_commit')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(report, out_dir, stem="bench"):
    """Write <stem>.json, <stem>.md and <stem>.png into out_dir; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["json"].write_text(to_json(report) + "\n")
    paths["markdown"].write_text(markdown(report))
    chart(report, paths["png"])
    return paths
