"""fastconv: hand-optimized deep-learning kernels with a small autograd API.

    import fastconv as fc
    import fastconv.functional as F
    x = fc.Tensor(np.random.rand(8, 3, 32, 32).astype("float32"), requires_grad=True)
    y = F.relu(x).sum(); y.backward()
"""
import importlib.util as _ilu
import os as _os
import sys as _sys

# OpenMP threads of the Cython kernels sleep between parallel regions instead of spinning:
# spinning threads starve OpenBLAS's own threads (and the next op) on small machines.
# Read once, when libgomp loads with the first compiled kernel; set OMP_WAIT_POLICY to override.
_OMP_POLICY_DEFAULTED = "OMP_WAIT_POLICY" not in _os.environ  # (fastconv bench undoes it, see there)
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# ``kernels/`` is installed as ``fastconv.kernels``.  Running from a source
# checkout without installing (e.g. on a GPU box), map it by hand.
try:
    from . import kernels  # noqa: F401
except ImportError:  # pragma: no cover - exercised only from an uninstalled tree
    _src = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "kernels")
    _spec = _ilu.spec_from_file_location(
        __name__ + ".kernels", _os.path.join(_src, "__init__.py"), submodule_search_locations=[_src]
    )
    kernels = _ilu.module_from_spec(_spec)
    _sys.modules[__name__ + ".kernels"] = kernels
    _spec.loader.exec_module(kernels)

from . import config  # noqa: E402
from .config import get_num_threads, set_num_threads  # noqa: E402
from .dispatch import use_backend  # noqa: E402
from .tensor import Function, Tensor, as_tensor, enable_grad, is_grad_enabled, no_grad, tensor  # noqa: E402
from . import ops as _ops  # noqa: E402,F401  (installs Tensor arithmetic)
from .ops import cat, concat, stack, zeros, ones, randn, rand, arange, from_dlpack, where, maximum, minimum  # noqa: E402
from . import random  # noqa: E402


def manual_seed(seed):
    """Seed every fastconv random stream: dropout seeds and parameter initialisation."""
    random.manual_seed(seed)
    from .nn import init

    init.manual_seed(seed)

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Function", "tensor", "as_tensor", "no_grad", "enable_grad", "is_grad_enabled",
    "use_backend", "config", "set_num_threads", "get_num_threads",
    "cat", "concat", "stack", "zeros", "ones", "randn", "rand", "arange", "from_dlpack", "where",
    "maximum", "minimum", "manual_seed", "random",
]
