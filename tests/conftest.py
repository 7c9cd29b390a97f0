import os
import shutil

import numpy as np
import pytest

# Without a GPU, Numba CUDA kernels run under the CUDA simulator (tiny shapes).
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def has_gpu():
    from fastconv.dispatch import gpu_status

    return gpu_status()[0]


gpu = pytest.mark.skipif(not has_gpu(), reason="needs a CUDA GPU with CuPy (none present)")
