"""Gather a backend's public kernels from its per-family modules."""
import importlib

FAMILIES = ("conv", "pool", "activation", "loss", "norm", "dense", "rnn", "attention", "optim")


def collect(package, namespace, families=FAMILIES):
    """Import ``package.<family>`` for each family that exists and copy its ``__all__``
    into ``namespace``.  Returns (names, {family: error}) for families that failed."""
    names, errors = [], {}
    for fam in families:
        modname = f"{package}.{fam}"
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                continue  # family not written for this backend: dispatch falls through
            errors[fam] = exc
            continue
        except ImportError as exc:
            errors[fam] = exc
            continue
        for name in getattr(mod, "__all__", ()):
            namespace[name] = getattr(mod, name)
            names.append(name)
    return names, errors
