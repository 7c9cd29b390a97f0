"""Dispatch: (op, device, backend) -> kernel function.

Resolution order for one call:
1. an explicit ``backend=`` argument (an error if that backend cannot serve
   the device or lacks the op);
2. the innermost ``fastconv.use_backend(name)`` context, when that backend
   serves the array's device;
3. the default order for the device (``DEFAULT_ORDER``).
A backend that leaves an op out falls through to the next backend on the
*same* device; dispatch never moves data to another device.
"""
import contextlib
import importlib
import threading

from ._xp import device_of

# name -> (module, devices it serves)
BACKENDS = {
    "reference": ("fastconv.kernels.reference", ("cpu", "cuda")),
    "cython": ("fastconv.kernels.cython", ("cpu",)),
    "numba_cuda": ("fastconv.kernels.numba_cuda", ("cuda",)),
    "cupy": ("fastconv.kernels.cupy", ("cuda",)),
}
DEFAULT_ORDER = {
    "cpu": ["cython", "reference"],
    "cuda": ["cupy", "numba_cuda", "reference"],
}

_modules = {}  # name -> module, or an exception explaining why it is unavailable
_overrides = {}  # (op, device, backend) -> fn, registered at run time
_local = threading.local()


class BackendUnavailable(RuntimeError):
    """A backend was asked for explicitly but cannot run here."""


def _stack():
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def load(name):
    """Import a backend module; return it, or raise BackendUnavailable with the reason."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    if name not in _modules:
        try:
            mod = importlib.import_module(BACKENDS[name][0])
            reason = getattr(mod, "UNAVAILABLE", None)
            _modules[name] = BackendUnavailable(f"backend {name!r} unavailable: {reason}") if reason else mod
        except Exception as exc:  # ImportError, missing driver, ...
            _modules[name] = BackendUnavailable(f"backend {name!r} unavailable: {type(exc).__name__}: {exc}")
    mod = _modules[name]
    if isinstance(mod, Exception):
        raise mod
    return mod


def available(name):
    """(True, '') if the backend loads, else (False, reason)."""
    try:
        load(name)
        return True, ""
    except BackendUnavailable as exc:
        return False, str(exc)


def register_backend(name, module_path, devices, priority=None):
    """Add a backend (e.g. a user's own kernels module) to the registry."""
    BACKENDS[name] = (module_path, tuple(devices))
    _modules.pop(name, None)
    if priority is not None:
        for dev in devices:
            order = DEFAULT_ORDER.setdefault(dev, [])
            if name in order:
                order.remove(name)
            order.insert(priority, name)


def register(op, device, backend, fn):
    """Register (or replace) one kernel for (op, device, backend)."""
    _overrides[(op, device, backend)] = fn
    if backend not in BACKENDS:
        BACKENDS[backend] = (None, (device,))
        _modules[backend] = _OverrideOnly()


def unregister_backend(name):
    BACKENDS.pop(name, None)
    _modules.pop(name, None)
    for key in [k for k in _overrides if k[2] == name]:
        del _overrides[key]
    for order in DEFAULT_ORDER.values():
        if name in order:
            order.remove(name)


class _OverrideOnly:
    """Placeholder module for backends made only of registered functions."""


def _lookup(op, device, name):
    fn = _overrides.get((op, device, name))
    if fn is not None:
        return fn
    if device not in BACKENDS[name][1]:
        return None
    try:
        mod = load(name)
    except BackendUnavailable:
        return None
    return getattr(mod, op, None)


def candidates(device, backend=None):
    """Backend names to try, in order, for a device."""
    if backend is not None:
        return [backend]
    order = list(DEFAULT_ORDER.get(device, []))
    for preferred in reversed(_stack()):
        if preferred in BACKENDS and device in BACKENDS[preferred][1]:
            order = [preferred] + [b for b in order if b != preferred]
            break
    return order


def resolve(op, device="cpu", backend=None):
    """Return (backend_name, kernel) for op on device."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {sorted(BACKENDS)}")
        if device not in BACKENDS[backend][1] and (op, device, backend) not in _overrides:
            raise BackendUnavailable(
                f"backend {backend!r} does not run on device {device!r} (it serves {BACKENDS[backend][1]})"
            )
        if (op, device, backend) not in _overrides:
            load(backend)  # raises with the reason if unavailable
    for name in candidates(device, backend):
        fn = _lookup(op, device, name)
        if fn is not None:
            return name, fn
    if backend is not None:
        raise BackendUnavailable(f"backend {backend!r} has no kernel {op!r}")
    raise BackendUnavailable(f"no backend provides {op!r} on device {device!r}")


def kernel(op, like, backend=None):
    """The kernel for op on the device of array ``like``."""
    return resolve(op, device_of(like), backend)[1]


def call(op, *args, backend=None, **kwargs):
    """Resolve op on the device of the first array argument and call it."""
    like = next((a for a in args if hasattr(a, "dtype")), None)
    return kernel(op, like, backend)(*args, **kwargs)


@contextlib.contextmanager
def use_backend(name):
    """Prefer backend ``name`` for ops on the devices it serves, inside the block."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
    load(name)  # fail early, with the reason
    _stack().append(name)
    try:
        yield
    finally:
        _stack().pop()


def info():
    """List of dicts: backend, devices, available, reason."""
    rows = []
    for name, (_, devices) in BACKENDS.items():
        ok, reason = available(name)
        if ok and "cuda" in devices and name != "reference":
            gpu_ok, gpu_reason = gpu_status()
            if not gpu_ok:
                ok, reason = False, gpu_reason
        rows.append({"backend": name, "devices": list(devices), "available": ok, "reason": reason})
    return rows


def gpu_status():
    """(True, name) when CuPy sees a CUDA GPU, else (False, why not)."""
    try:
        import cupy
    except Exception as exc:
        return False, f"CuPy not installed ({type(exc).__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA GPU ({type(exc).__name__}: {exc})"
    if n < 1:
        return False, "no CUDA GPU (device count 0)"
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return True, name.decode() if isinstance(name, bytes) else str(name)
