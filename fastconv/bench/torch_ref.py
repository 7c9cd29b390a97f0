"""The same ops in PyTorch, measured in the same run for the speed ratio.

``builders(op, direction, data, p, dtype, device)`` returns
``{variant: build}``; ``build()`` makes the tensors and returns the
zero-argument callable to time (built lazily, so optimizer variants do not all
hold a copy of the model at once).  Empty when torch is missing or the op has
no PyTorch counterpart.  Backward directions call the ATen backward op where
PyTorch exposes one (conv, pools, relu) and ``torch.autograd.grad`` over a
retained graph otherwise.
"""
import math


def available():
    try:
        import torch  # noqa: F401

        return True
    except Exception:
        return False


def version():
    try:
        import torch

        return torch.__version__
    except Exception:
        return None


def configure(device, threads, allow_tf32=False):
    """Same conditions as fastconv: CPU threads; on the GPU cuDNN autotuning (like the
    ANCHORS numbers) and TF32 only when fastconv's kernels may use it too."""
    import torch

    torch.set_num_threads(int(threads))
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = bool(allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = bool(allow_tf32)
    return {"threads": torch.get_num_threads(), "cudnn_benchmark": device == "cuda", "tf32": bool(allow_tf32)}


def _tensors(data, dtype, device):
    import numpy as np
    import torch

    tdt = {"float32": torch.float32, "float64": torch.float64}[str(np.dtype(dtype))]
    out = {}
    for k, v in data.items():
        if v is None:
            out[k] = None
        elif v.dtype.kind == "f":
            out[k] = torch.from_numpy(np.ascontiguousarray(v)).to(device=device, dtype=tdt)
        else:
            out[k] = torch.from_numpy(np.ascontiguousarray(v)).to(device=device)
    return out


def _grad_fn(outputs, inputs, grads):
    import torch

    inputs = [t for t in inputs if t is not None]
    return lambda: torch.autograd.grad(outputs, inputs, grads, retain_graph=True)


def _conv(t, d, p):
    import torch
    import torch.nn.functional as F

    s, pad, dil, g = (p.get("stride", 1),) * 2, (p.get("pad", 0),) * 2, (p.get("dilation", 1),) * 2, p.get("groups", 1)
    x, w, b, dy = t["x"], t["w"], t["b"], t["dy"]
    if d == "fwd":
        return torch.no_grad()(lambda: F.conv2d(x, w, b, s, pad, dil, g))
    if d == "bwd_input":
        return lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, s, pad, dil, g)
    if d == "bwd_weight":
        return lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, s, pad, dil, g)
    xr, wr = x.requires_grad_(True), w.requires_grad_(True)
    br = b.requires_grad_(True) if b is not None else None
    ins = [xr, wr] + ([br] if br is not None else [])
    return lambda: torch.autograd.grad(F.conv2d(xr, wr, br, s, pad, dil, g), ins, dy)


def _pool(op, t, d, p):
    import torch
    import torch.nn.functional as F

    x, dy = t["x"], t["dy"]
    if op == "adaptive_avg_pool2d":
        os_ = p["output_size"]
        if d == "fwd":
            return lambda: F.adaptive_avg_pool2d(x, os_)
        return lambda: torch.ops.aten._adaptive_avg_pool2d_backward(dy, x)
    k = p["kernel_size"]
    s, pad = p.get("stride") or k, p.get("padding", 0)
    if op == "max_pool2d":
        if d == "fwd":
            return lambda: F.max_pool2d(x, k, s, pad, return_indices=True)
        _, idx = F.max_pool2d(x, k, s, pad, return_indices=True)
        return lambda: torch.ops.aten.max_pool2d_with_indices_backward(dy, x, [k, k], [s, s], [pad, pad], [1, 1], False, idx)
    if d == "fwd":
        return lambda: F.avg_pool2d(x, k, s, pad, False, True)
    return lambda: torch.ops.aten.avg_pool2d_backward(dy, x, [k, k], [s, s], [pad, pad], False, True, None)


def _plain(op, t, d, p):
    import torch
    import torch.nn.functional as F

    if op == "relu":
        if d == "fwd":
            return lambda: torch.relu(t["x"])
        y = torch.relu(t["x"])
        return lambda: torch.ops.aten.threshold_backward(t["dy"], y, 0)
    if op == "softmax_cross_entropy":
        ls, red = float(p.get("label_smoothing", 0.0)), p.get("reduction", "mean")
        lg = t["logits"]
        if d == "fwd":
            return lambda: F.cross_entropy(lg, t["target"], label_smoothing=ls, reduction=red)
        lg.requires_grad_(True)
        return _grad_fn(F.cross_entropy(lg, t["target"], label_smoothing=ls, reduction=red), [lg], None)
    if op == "batch_norm":
        x, g, b, rm, rv = t["x"], t["gamma"], t["beta"], t["running_mean"], t["running_var"]
        if d == "fwd":
            return torch.no_grad()(lambda: F.batch_norm(x, rm, rv, g, b, True, 0.1, 1e-5))
        for v in (x, g, b):
            v.requires_grad_(True)
        return _grad_fn(F.batch_norm(x, rm, rv, g, b, True, 0.1, 1e-5), [x, g, b], t["dy"])
    if op in ("lstm_cell", "gru_cell"):
        names = ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh") if op == "lstm_cell" else ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh")
        x, h, wi, wh, bi, bh = (t[k] for k in ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh"))
        if op == "lstm_cell":
            fwd = lambda: torch.lstm_cell(x, [h, t["c"]], wi, wh, bi, bh)  # noqa: E731
        else:
            fwd = lambda: torch.gru_cell(x, h, wi, wh, bi, bh)  # noqa: E731
        if d == "fwd":
            return torch.no_grad()(fwd)
        for k in names:
            t[k].requires_grad_(True)
        out = fwd()
        if op == "lstm_cell":
            return _grad_fn(list(out), [t[k] for k in names], [t["dh"], t["dc"]])
        return _grad_fn(out, [t[k] for k in names], t["dh"])
    if op == "attention":
        q, k, v, causal = t["q"], t["k"], t["v"], bool(p.get("causal", False))
        if d == "fwd":
            return torch.no_grad()(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        for a in (q, k, v):
            a.requires_grad_(True)
        return _grad_fn(F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], t["dout"])
    return None


_OPTIM_VARIANTS = ("for-loop", "foreach", "fused")


def _optim(op, data, p, dtype, device, variant):
    import torch

    from .cases import param_shapes

    shapes = param_shapes(p["params"])
    flat = _tensors({"param": data["param"], "grad": data["grad"]}, dtype, device)
    params, off = [], 0
    for s in shapes:
        n = math.prod(s)
        pt = flat["param"][off:off + n].view(s).clone()
        pt.grad = flat["grad"][off:off + n].view(s).clone()
        params.append(pt)
        off += n
    kw = {"foreach": False} if variant == "for-loop" else ({"foreach": True} if variant == "foreach" else {"fused": True})
    wd = float(p.get("weight_decay", 0.0))
    if op == "sgd":
        opt = torch.optim.SGD(params, lr=float(p["lr"]), momentum=float(p.get("momentum", 0.9)),
                              dampening=float(p.get("dampening", 0.0)), weight_decay=wd,
                              nesterov=bool(p.get("nesterov", False)), **kw)
    elif op == "adam":
        cls = torch.optim.AdamW if p.get("decoupled") else torch.optim.Adam
        opt = cls(params, lr=float(p["lr"]), betas=(0.9, 0.999), eps=1e-8, weight_decay=wd, **kw)
    elif op == "adagrad":
        opt = torch.optim.Adagrad(params, lr=float(p["lr"]), lr_decay=0.0, weight_decay=wd, eps=1e-10, **kw)
    else:
        return None
    opt.step()  # creates the state, as the first training step would
    return opt.step


def builders(op, direction, data, p, dtype, device):
    """{variant: build} for PyTorch's version of (op, direction); {} if none."""
    if not available():
        return {}
    tdev = "cuda" if device == "cuda" else "cpu"
    if op in ("sgd", "adam", "adagrad"):
        return {f"torch {v}": (lambda v=v: _optim(op, data, p, dtype, tdev, v)) for v in _OPTIM_VARIANTS}

    def build():
        t = _tensors(data, dtype, tdev)
        if op == "conv2d":
            return _conv(t, direction, p)
        if op in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"):
            return _pool(op, t, direction, p)
        return _plain(op, t, direction, p)

    if op not in ("conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu", "softmax_cross_entropy",
                  "batch_norm", "lstm_cell", "gru_cell", "attention"):
        return {}
    return {"torch": build}
