"""Benchmark cases for bench/gpu_check.py, run in a child process (``--bench-child``).

Each case times PyTorch first (cuDNN FP32, TF32 off unless the case is a TF32
one), then every loaded GPU backend of fastconv on the same tensors shared
through DLPack; each result is validated against PyTorch before timing.
Events go to a JSON-lines file the parent reads, so a crash loses nothing
already measured.
"""
import json
import sys
import time
import traceback

SLOW_S = 8.0  # seconds of timed runs per measurement before stopping early

from gpu_check import CONV_SHAPES, ROOT, RUNS, WARMUP, numpy_compat, short


class Child:
    """Benchmark cases, run inside the child process; rows appended to a JSON-lines file."""

    def __init__(self, results_path, disabled, budget_end):
        numpy_compat()
        sys.path.insert(0, ROOT)
        import cupy
        import torch

        import fastconv
        from fastconv import dispatch

        self.cp, self.torch, self.fc = cupy, torch, fastconv
        self.out = open(results_path, "a")
        self.budget_end = budget_end
        self.backends = {}
        self.disabled = disabled  # {"backend@kind"} switched off after a crash
        self.kind = ""
        for name in ("cupy", "numba_cuda"):
            try:
                self.backends[name] = dispatch.load(name)
            except Exception as exc:
                self.emit({"event": "note", "text": f"{name} not loaded: {short(exc)}"})
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.manual_seed(0)

    def emit(self, rec):
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()

    def stage(self, case, backend):
        self.emit({"event": "stage", "case": case, "backend": backend, "kind": self.kind})

    def active(self, *needs):
        """(name, module) of the loaded backends that have every kernel in ``needs``."""
        for name, mod in self.backends.items():
            if f"{name}@{self.kind}" in self.disabled:
                continue
            if all(hasattr(mod, n) for n in needs):
                yield name, mod

    def row(self, name, backend, ours, ref, err, note=""):
        ratio = (ref / ours) if (ours and ref) else None
        if ours is not None and getattr(self, "last_runs", RUNS) < RUNS:
            note = (note + " " if note else "") + f"only {self.last_runs} runs (slow)"
        self.emit({"event": "row", "name": name, "backend": backend, "ours_ms": ours, "torch_ms": ref,
                   "ratio": ratio, "rel_err": err, "note": note})

    # -- timing -------------------------------------------------------------
    def time_ms(self, fn, runs=RUNS):
        cp = self.cp
        for _ in range(WARMUP):
            fn()
        cp.cuda.Device().synchronize()
        self.torch.cuda.synchronize()
        times = []
        start, end = cp.cuda.Event(), cp.cuda.Event()
        t_wall = time.time()
        for _ in range(runs):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end))
            if time.time() - t_wall > SLOW_S:  # a very slow kernel: fewer runs (counted in the row)
                break
        times.sort()
        self.last_runs = len(times)
        return times[len(times) // 2]

    def time_torch_ms(self, fn, runs=RUNS):
        torch = self.torch
        for _ in range(WARMUP):
            fn()
        torch.cuda.synchronize()
        times = []
        t_wall = time.time()
        for _ in range(runs):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
            if time.time() - t_wall > SLOW_S:
                break
        times.sort()
        self.last_runs = len(times)
        return times[len(times) // 2]

    def sticky(self):
        """True when the CUDA context is broken (e.g. an illegal address): the child must restart."""
        try:
            self.cp.cuda.Device().synchronize()
            self.torch.cuda.synchronize()
            return False
        except Exception:
            return True

    def rel(self, ours, ref):
        """||ours - ref|| / ||ref|| computed on the GPU (float64)."""
        cp = self.cp
        a = cp.from_dlpack(ours) if not isinstance(ours, cp.ndarray) else ours
        b = cp.from_dlpack(ref.detach().contiguous()) if not isinstance(ref, cp.ndarray) else ref
        a, b = a.astype(cp.float64), b.astype(cp.float64)
        den = float(cp.linalg.norm(b.ravel()))
        num = float(cp.linalg.norm((a - b).ravel()))
        return num / den if den else num

    # -- cases --------------------------------------------------------------
    def run(self, case):
        kind, _, arg = case.partition(":")
        self.kind = kind
        if kind == "conv":
            self.conv(arg, tf32=False)
        elif kind == "conv_tf32":
            self.conv(arg, tf32=True)
        else:
            getattr(self, kind)()

    def conv(self, shape_name, tf32):
        torch, cp = self.torch, self.cp
        F = torch.nn.functional
        N, C, H, W, K, R, S, st, pad, g = CONV_SHAPES[shape_name]
        dev = "cuda"
        x_t = torch.randn(N, C, H, W, device=dev)
        w_t = torch.randn(K, C // g, R, S, device=dev) * (2.0 / (C // g * R * S)) ** 0.5
        b_t = torch.randn(K, device=dev)
        x_c, w_c, b_c = cp.from_dlpack(x_t), cp.from_dlpack(w_t), cp.from_dlpack(b_t)
        tag = f"conv {shape_name}" + (" tf32" if tf32 else "")
        from fastconv.kernels.cupy import conv as cupy_conv

        old_tf32 = (torch.backends.cudnn.allow_tf32, self.fc.config.allow_tf32, cupy_conv.USE_TF32_KERNEL)
        torch.backends.cudnn.allow_tf32 = tf32
        self.fc.config.allow_tf32 = tf32
        cupy_conv.USE_TF32_KERNEL = tf32  # the TF32 rows time the tensor-core kernel itself
        try:
            self.stage(tag, "torch")
            y_t = F.conv2d(x_t, w_t, b_t, st, pad, 1, g)
            dy_t = torch.randn_like(y_t)
            xg, wg, bg = (x_t.clone().requires_grad_(True), w_t.clone().requires_grad_(True),
                          b_t.clone().requires_grad_(True))

            def torch_fb():
                xg.grad = wg.grad = bg.grad = None
                out = F.conv2d(xg, wg, bg, st, pad, 1, g)
                out.backward(dy_t)

            torch_fb()
            dx_t, dw_t, db_t = xg.grad.clone(), wg.grad.clone(), bg.grad.clone()
            t_f = self.time_torch_ms(lambda: F.conv2d(x_t, w_t, b_t, st, pad, 1, g))
            t_fb = None if tf32 else self.time_torch_ms(torch_fb)
            dy_c = cp.from_dlpack(dy_t)
            for bname, Kb in self.active("conv2d_forward"):
                if tf32 and bname != "cupy":
                    continue
                self.stage(tag, bname)
                try:
                    fwd = lambda: Kb.conv2d_forward(x_c, w_c, b_c, st, pad, 1, g)  # noqa: E731
                    err = self.rel(fwd(), y_t)
                    t = self.time_ms(fwd)
                    self.row(f"{tag} fwd", bname, t, t_f, err)
                except Exception as exc:
                    if self.sticky():
                        raise
                    self.row(f"{tag} fwd", bname, None, t_f, None, short(exc))
                    continue
                if tf32:
                    continue
                need = ("conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias")
                if not all(hasattr(Kb, n) for n in need):
                    continue
                try:
                    def fb():
                        y = Kb.conv2d_forward(x_c, w_c, b_c, st, pad, 1, g)
                        dx = Kb.conv2d_backward_input(dy_c, w_c, x_c.shape, st, pad, 1, g)
                        dw = Kb.conv2d_backward_weight(dy_c, x_c, w_c.shape, st, pad, 1, g)
                        db = Kb.conv2d_backward_bias(dy_c)
                        return y, dx, dw, db

                    _, dx, dw, db = fb()
                    err = max(self.rel(dx, dx_t), self.rel(dw, dw_t), self.rel(db, db_t))
                    t = self.time_ms(fb)
                    self.row(f"{tag} fwd+bwd", bname, t, t_fb, err)
                except Exception as exc:
                    if self.sticky():
                        raise
                    self.row(f"{tag} fwd+bwd", bname, None, t_fb, None, short(exc))
        finally:
            torch.backends.cudnn.allow_tf32, self.fc.config.allow_tf32, cupy_conv.USE_TF32_KERNEL = old_tf32

    def relu(self):
        torch, cp = self.torch, self.cp
        n = 268_435_456
        x_t = torch.randn(n, device="cuda")
        x_c = cp.from_dlpack(x_t)
        self.stage("relu", "torch")
        t_ref = self.time_torch_ms(lambda: torch.relu(x_t))
        y_t = torch.relu(x_t)
        for bname, Kb in self.active("relu_forward"):
            self.stage("relu", bname)
            try:
                f = lambda: Kb.relu_forward(x_c)  # noqa: E731
                err = self.rel(f(), y_t)
                t = self.time_ms(f)
                self.row("relu 268M fp32", bname, t, t_ref, err, f"{2 * 4 * n / (t * 1e-3) / 1e12:.2f} TB/s")
            except Exception as exc:
                if self.sticky():
                    raise
                self.row("relu 268M fp32", bname, None, t_ref, None, short(exc))

    def max_pool2d(self):
        torch, cp = self.torch, self.cp
        F = torch.nn.functional
        x_t = torch.randn(64, 256, 112, 112, device="cuda")
        x_c = cp.from_dlpack(x_t)
        self.stage("max_pool2d", "torch")
        t_ref = self.time_torch_ms(lambda: F.max_pool2d(x_t, 3, 2, 1, return_indices=True))
        y_t, i_t = F.max_pool2d(x_t, 3, 2, 1, return_indices=True)
        dy_t = torch.randn_like(y_t)
        xg = x_t.clone().requires_grad_(True)
        yg = F.max_pool2d(xg, 3, 2, 1)
        yg.backward(dy_t)
        dx_t = xg.grad
        t_refb = self.time_torch_ms(
            lambda: torch.ops.aten.max_pool2d_with_indices_backward(dy_t, x_t, [3, 3], [2, 2], [1, 1], [1, 1], False, i_t))
        dy_c = cp.from_dlpack(dy_t)
        for bname, Kb in self.active("max_pool2d_forward", "max_pool2d_backward"):
            self.stage("max_pool2d", bname)
            try:
                f = lambda: Kb.max_pool2d_forward(x_c, 3, 2, 1, 1, False)  # noqa: E731
                y, am = f()
                err = self.rel(y, y_t)
                same_idx = bool((am == cp.from_dlpack(i_t)).all())
                t = self.time_ms(f)
                self.row("max_pool2d 3x3s2 fwd", bname, t, t_ref, err, "" if same_idx else "ARGMAX DIFFERS")
                b = lambda: Kb.max_pool2d_backward(dy_c, am, x_c.shape)  # noqa: E731  (the contract call)
                err = self.rel(b(), dx_t)
                t = self.time_ms(b)
                self.row("max_pool2d 3x3s2 bwd", bname, t, t_refb, err)
                if bname == "cupy":  # with the window geometry as extra keywords
                    kw = {"kernel_size": 3, "stride": 2, "padding": 1}
                    b = lambda: Kb.max_pool2d_backward(dy_c, am, x_c.shape, **kw)  # noqa: E731
                    err = self.rel(b(), dx_t)
                    t = self.time_ms(b)
                    self.row("max_pool2d 3x3s2 bwd (geometry kw)", bname, t, t_refb, err)
            except Exception as exc:
                if self.sticky():
                    raise
                self.row("max_pool2d 3x3s2", bname, None, t_ref, None, short(exc))

    def adam(self):
        torch, cp = self.torch, self.cp
        gen = torch.Generator().manual_seed(0)
        total, count = 25_300_000, 161
        w = torch.rand(count, generator=gen) ** 3
        sizes = (w / w.sum() * (total - count)).long() + 1
        sizes[-1] += total - int(sizes.sum())
        params = [torch.randn(int(s), device="cuda", requires_grad=True) for s in sizes]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)
        self.stage("adam", "torch")
        t_ref = self.time_torch_ms(opt.step)
        flat_p = torch.cat([p.detach().reshape(-1) for p in params])
        flat_g = torch.cat([p.grad.reshape(-1) for p in params])
        P, G = cp.from_dlpack(flat_p), cp.from_dlpack(flat_g)
        M, V = cp.zeros_like(P), cp.zeros_like(P)
        # validation: one step from zero state against torch's functional fused Adam on the same data
        p0 = flat_p.clone()
        m0, v0 = torch.zeros_like(p0), torch.zeros_like(p0)
        ref_opt = torch.optim.Adam([torch.nn.Parameter(p0)], lr=1e-3, fused=True)
        ref_opt.param_groups[0]["params"][0].grad = flat_g.clone()
        ref_opt.step()
        ref_p = ref_opt.param_groups[0]["params"][0].detach()
        del m0, v0
        for bname, Kb in self.active("adam_step"):
            self.stage("adam", bname)
            try:
                P1, M1, V1 = P.copy(), M.copy(), V.copy()
                Kb.adam_step(P1, G, M1, V1, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
                err = self.rel(P1 - P, ref_p - flat_p)  # error of the update itself
                state = {"step": 0}

                def f():
                    state["step"] += 1
                    Kb.adam_step(P1, G, M1, V1, state["step"], 1e-3, 0.9, 0.999, 1e-8, 0.0, False)

                t = self.time_ms(f)
                self.row("adam 25.3M (161 tensors)", bname, t, t_ref, err, "rel err of one update")
            except Exception as exc:
                if self.sticky():
                    raise
                self.row("adam 25.3M (161 tensors)", bname, None, t_ref, None, short(exc))


def child_main(args):
    budget_end = float(args.budget_end)
    try:
        ch = Child(args.results, set(filter(None, args.disable.split(","))), budget_end)
    except Exception as exc:
        with open(args.results, "a") as f:
            f.write(json.dumps({"event": "fatal", "text": short(exc)}) + "\n")
        return 2
    for case in filter(None, args.cases.split(",")):
        if time.time() > budget_end:
            ch.emit({"event": "skip", "case": case, "text": "time budget"})
            continue
        ch.emit({"event": "start", "case": case})
        try:
            ch.run(case)
        except Exception as exc:
            ch.emit({"event": "error", "case": case, "text": short(exc),
                     "trace": traceback.format_exc()[-600:]})
        if ch.sticky():  # a sticky CUDA error makes every later case fail: restart the process
            return 3
        ch.emit({"event": "end", "case": case})
        try:
            ch.cp.get_default_memory_pool().free_all_blocks()
            ch.torch.cuda.empty_cache()
        except Exception:
            pass
    return 0
