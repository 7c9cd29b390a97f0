"""Checkpoints: nested state (dicts, lists, arrays, Tensors, numbers) in one file.

File layout: 8-byte magic, 32-byte SHA-256 of the payload, then the payload
(an .npz archive: the arrays plus a JSON skeleton of the structure).  Writes
are atomic (temporary file in the same folder, fsync, rename); a truncated or
corrupted file raises ``CheckpointError`` instead of loading garbage.
"""
import hashlib
import io
import json
import os
import tempfile

import numpy as np

from .._xp import to_numpy

MAGIC = b"FCCKPT01"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or corrupted."""


def _pack(obj, arrays):
    from ..tensor import Tensor

    if isinstance(obj, Tensor):
        obj = obj.data
    if hasattr(obj, "dtype") and hasattr(obj, "shape") and not isinstance(obj, np.generic):
        key = f"a{len(arrays)}"
        arrays[key] = to_numpy(obj)
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {"__dict__": [[_pack(k, arrays), _pack(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store an object of type {type(obj).__name__}")


def _unpack(node, arrays):
    if isinstance(node, list):
        return [_unpack(v, arrays) for v in node]
    if isinstance(node, dict):
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__tuple__" in node:
            return tuple(_unpack(v, arrays) for v in node["__tuple__"])
        if "__dict__" in node:
            return {_unpack(k, arrays) if not isinstance(k, list) else tuple(k): _unpack(v, arrays)
                    for k, v in node["__dict__"]}
    return node


def save(obj, path):
    """Atomically write ``obj`` to ``path``."""
    arrays = {}
    skeleton = _pack(obj, arrays)
    buf = io.BytesIO()
    np.savez(buf, __skeleton__=np.frombuffer(json.dumps(skeleton).encode(), dtype=np.uint8), **arrays)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).digest()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(digest)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path):
    """Read a checkpoint written by ``save``; verify its checksum."""
    fmt = f"expected a fastconv checkpoint: {MAGIC.decode()} magic, SHA-256 of the payload, .npz payload"
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist ({fmt})")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 40 or raw[:8] != MAGIC:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a fastconv checkpoint (bad header, {len(raw)} bytes; "
                              f"{fmt})")
    digest, payload = raw[8:40], raw[40:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupted (checksum mismatch, "
                              f"{len(raw)} bytes; it was not written completely or was modified)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        skeleton = json.loads(arrays.pop("__skeleton__").tobytes().decode())
        return _unpack(skeleton, arrays)
    except Exception as exc:  # a valid checksum over a payload that is not ours
        raise CheckpointError(f"checkpoint {str(path)!r}: unreadable payload ({type(exc).__name__}: {exc}; "
                              f"{fmt})") from None
