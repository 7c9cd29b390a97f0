"""Model registry and weight files.

- ``load_state_dict_file(path)``: a torchvision-style state dict from ``.npz``,
  ``.safetensors`` (read by a small built-in parser; no dependency) or
  ``.pt``/``.pth`` (through torch, imported only then) as {name: ndarray}.
- ``save_state_dict_file(state, path)``: the reverse for ``.npz``/``.safetensors``.
- ``save_checkpoint`` / ``load_checkpoint``: fastconv's own format, one ``.npz``
  holding the model's state dict, optional optimizer state (any nested
  dict/list of arrays and scalars) and JSON metadata; written atomically.
- ``get_model(name, **kw)`` / ``list_models()``: the registry the model files fill.
"""
import io
import json
import os
import struct
import tempfile

import numpy as np

_REGISTRY = {}


def register(fn):
    """Decorator: make a model builder available to ``get_model`` under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models():
    from . import _load_all  # noqa: F401  (importing the package registers every family)

    return sorted(_REGISTRY)


def get_model(name, weights=None, strict=True, **kwargs):
    """Build a registered model; ``weights`` (a path) loads a state-dict file into it."""
    list_models()
    if name not in _REGISTRY:
        raise ValueError(f"get_model: unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    model = _REGISTRY[name](**kwargs)
    if weights is not None:
        model.load_state_dict(load_state_dict_file(weights), strict=strict)
    return model


# ---- safetensors (format: u64 little-endian header length, JSON header, raw little-endian data) ----

_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
              "U8": "u1", "BOOL": "?"}
_ST_NAMES = {np.dtype(v).str if v != "?" else "|b1": k for k, v in _ST_DTYPES.items()}


def _read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: not a safetensors file (header length {n} exceeds file size)")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        buf = raw[base + start: base + end]
        if dt == "BF16":  # bfloat16: the top half of a float32
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt in _ST_DTYPES:
            arr = np.frombuffer(buf, dtype=_ST_DTYPES[dt])
        else:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dt}")
        out[name] = arr.reshape(shape).astype(arr.dtype.newbyteorder("="), copy=True)
    return out


def _write_safetensors(state, path, metadata=None):
    header, chunks, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in state.items():
        arr = np.ascontiguousarray(arr)
        key = arr.dtype.newbyteorder("<").str if arr.dtype.kind != "b" else "|b1"
        if key not in _ST_NAMES:
            raise TypeError(f"save_state_dict_file: {name!r} has dtype {arr.dtype}, not storable in safetensors")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_NAMES[key], "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def _numpy(v):
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    if hasattr(v, "get") and type(v).__module__.split(".")[0] == "cupy":
        return v.get()
    if hasattr(v, "numpy") and hasattr(v, "data"):  # fastconv Tensor
        return v.numpy()
    return np.asarray(v)


def load_state_dict_file(path, strip_prefix=None):
    """Read a state dict ({name: ndarray}) from .npz, .safetensors, or .pt/.pth (needs torch).

    A ``.pt`` file holding a checkpoint dict is unwrapped from its ``state_dict`` or
    ``model`` entry.  ``strip_prefix`` (e.g. ``'module.'`` from DataParallel) is removed
    from keys that start with it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_state_dict_file: no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        if _META_KEY in state:  # a fastconv checkpoint: take its model part
            state = {k[len("model/"):]: v for k, v in state.items() if k.startswith("model/")}
    elif ext == ".safetensors":
        state = _read_safetensors(path)
    elif ext in (".pt", ".pth", ".bin"):
        try:
            import torch
        except ImportError as exc:
            raise ImportError(f"load_state_dict_file: reading {ext} files needs PyTorch; convert the file to "
                              ".npz or .safetensors, or install torch") from exc
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            for key in ("state_dict", "model_state_dict", "model"):
                if key in obj and isinstance(obj[key], dict):
                    obj = obj[key]
                    break
        if not isinstance(obj, dict):
            raise ValueError(f"load_state_dict_file: {path} holds a {type(obj).__name__}, not a state dict")
        state = {k: _numpy(v) for k, v in obj.items() if hasattr(v, "shape")}
    else:
        raise ValueError(f"load_state_dict_file: unsupported extension {ext!r} for {path}; "
                         "use .npz, .safetensors, .pt or .pth")
    if strip_prefix:
        state = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in state.items()}
    return state


def save_state_dict_file(state_dict, path):
    """Write {name: array} (e.g. ``model.state_dict()``) as .npz or .safetensors, atomically."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    state = {k: _numpy(v) for k, v in state_dict.items()}
    if ext == ".npz":
        _atomic(path, lambda f: np.savez(f, **state))
    elif ext == ".safetensors":
        _atomic(path, lambda f: _write_safetensors(state, f))
    else:
        raise ValueError(f"save_state_dict_file: unsupported extension {ext!r}; use .npz or .safetensors")


def _atomic(path, write):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ---- fastconv checkpoints -------------------------------------------------------------------

_META_KEY = "__fastconv_meta__"


def _pack(obj, arrays, prefix):
    """Nested dict/list/scalars/arrays -> JSON-able structure; arrays go into ``arrays``."""
    if isinstance(obj, dict):
        return {"__dict__": [[_pack(k, arrays, prefix), _pack(v, arrays, prefix)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_pack(v, arrays, prefix) for v in obj]}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return {"__float__": repr(float(obj))}  # repr keeps inf/nan and full precision
    if hasattr(obj, "shape") and hasattr(obj, "dtype") or hasattr(obj, "detach"):
        key = f"{prefix}/{len(arrays)}"
        arrays[key] = _numpy(obj)
        return {"__array__": key}
    raise TypeError(f"save_checkpoint: cannot store a {type(obj).__name__}")


def _unpack(obj, arrays):
    if isinstance(obj, dict):
        if "__dict__" in obj:
            return {_unpack(k, arrays): _unpack(v, arrays) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_unpack(v, arrays) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_unpack(v, arrays) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__array__" in obj:
            return arrays[obj["__array__"]]
    return obj


def save_checkpoint(path, model, optimizer=None, **metadata):
    """Save model state (and optimizer state, and JSON-able metadata such as epoch) to one .npz, atomically."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"save_checkpoint: path must end in .npz, got {path}")
    arrays = {f"model/{k}": _numpy(v) for k, v in model.state_dict().items()}
    meta = {"format": "fastconv-checkpoint", "version": 1, "model_class": type(model).__name__,
            "metadata": _pack(metadata, arrays, "meta")}
    if optimizer is not None:
        meta["optimizer"] = _pack(optimizer.state_dict(), arrays, "optim")
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    _atomic(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path, model=None, optimizer=None, strict=True):
    """Load a checkpoint written by ``save_checkpoint``; restores ``model``/``optimizer`` when given.

    Returns a dict: ``model_state``, ``optimizer_state`` (or None), ``metadata``, ``model_class``.
    """
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if _META_KEY not in arrays:
        raise ValueError(f"load_checkpoint: {path} is not a fastconv checkpoint (no metadata); "
                         "use load_state_dict_file for plain state dicts")
    meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    opt_state = _unpack(meta["optimizer"], arrays) if "optimizer" in meta else None
    if model is not None:
        model.load_state_dict(state, strict=strict)
    if optimizer is not None:
        if opt_state is None:
            raise ValueError(f"load_checkpoint: {path} holds no optimizer state")
        optimizer.load_state_dict(opt_state)
    return {"model_state": state, "optimizer_state": opt_state, "metadata": _unpack(meta["metadata"], arrays),
            "model_class": meta.get("model_class")}


def state_dict_bytes(state_dict):
    """The .npz bytes of a state dict (for in-memory round trips)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: _numpy(v) for k, v in state_dict.items()})
    return buf.getvalue()
