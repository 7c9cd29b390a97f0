"""fastconv.functional: differentiable ops with torch.nn.functional's names.

Each op is an autograd ``Function`` whose forward and backward call kernels
through the dispatch layer (``fastconv.dispatch``); nothing here touches a
backend directly.  Every op takes ``backend=`` to pin a backend for one call.
"""
import importlib as _importlib

_FAMILIES = ("conv", "pool", "activation", "loss", "norm", "dense", "rnn", "attention")
__all__ = []
for _fam in _FAMILIES:
    try:
        _mod = _importlib.import_module(f"{__name__}.{_fam}")
    except ModuleNotFoundError as _exc:
        if _exc.name == f"{__name__}.{_fam}":
            continue
        raise
    for _name in _mod.__all__:
        globals()[_name] = getattr(_mod, _name)
    __all__ += list(_mod.__all__)
