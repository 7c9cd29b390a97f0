"""Testing helpers: finite-difference gradient checks and error measures."""
import numpy as np

from .tensor import Tensor


def rel_error(out, ref):
    """||out - ref|| / ||ref|| (absolute norm when ref is all zeros)."""
    out = np.asarray(out.numpy() if isinstance(out, Tensor) else (out.get() if hasattr(out, "get") else out), dtype=np.float64)
    ref = np.asarray(ref.numpy() if isinstance(ref, Tensor) else (ref.get() if hasattr(ref, "get") else ref), dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"rel_error: shapes differ: {out.shape} vs {ref.shape}")
    denom = np.linalg.norm(ref.ravel())
    diff = np.linalg.norm((out - ref).ravel())
    return float(diff / denom) if denom > 0 else float(diff)


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, raise_exception=True):
    """Compare autograd gradients of ``fn(*inputs)`` with central differences.

    ``inputs`` are float64 Tensors; those with ``requires_grad`` are checked.
    The output is reduced with a fixed random projection, so every output
    element contributes.  Returns True, or raises AssertionError naming the
    input and the worst element.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} must be float64, got {t.dtype}")
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs = [o for o in outs if isinstance(o, Tensor)]
    projs = [rng.standard_normal(o.shape) for o in outs]

    def scalar(os_):
        os_ = os_ if isinstance(os_, (tuple, list)) else (os_,)
        os_ = [o for o in os_ if isinstance(o, Tensor)]
        return sum(float(np.sum(o.numpy().astype(np.float64) * p)) for o, p in zip(os_, projs))

    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    total = None
    for o, p in zip(outs, projs):
        if not o.requires_grad:
            continue
        term = (o * Tensor(p.astype(o.dtype))).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("gradcheck: no output requires grad")
    total.backward()
    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = np.zeros(t.shape) if t.grad is None else np.asarray(t.grad, dtype=np.float64)
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            fp = scalar(fn(*inputs))
            flat[j] = old - eps
            fm = scalar(fn(*inputs))
            flat[j] = old
            numeric.reshape(-1)[j] = (fp - fm) / (2 * eps)
        bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            j = int(np.argmax(np.abs(analytic - numeric)))
            msg = (f"gradcheck: input {i} (shape {t.shape}) gradient mismatch at flat index {j}: "
                   f"analytic {analytic.reshape(-1)[j]:.8g} vs numeric {numeric.reshape(-1)[j]:.8g} "
                   f"({int(bad.sum())} of {bad.size} elements off)")
            if raise_exception:
                raise AssertionError(msg)
            return False
    return True
