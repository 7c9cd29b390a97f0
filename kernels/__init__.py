"""fastconv.kernels: hand-written kernels, one sub-package per backend.

    reference   NumPy (CuPy-compatible through ``xp``) -- the specification
    cython      CPU: OpenMP + BLAS
    numba_cuda  GPU: @cuda.jit kernels
    cupy        GPU: CUDA C++ through cupy.RawModule

Every backend exposes the same function names with the same signatures; see
CONTRACT.md beside this file.  Import a backend directly to use its kernels
on plain arrays::

    from fastconv.kernels import reference as K
    y = K.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), 1)
"""
