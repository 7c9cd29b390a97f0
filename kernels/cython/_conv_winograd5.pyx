# cython: language_level=3
"""Winograd F(2x2, 5x5) for 5x5 / stride-1 convolutions (forward; backward-input as the
forward of dy with the flipped, transposed filters). Work in progress: ``pick`` keeps
'auto' on the GEMM path until the kernels land, and a forced ``algo='winograd5'`` raises."""


def pick(op, x_shape, w_shape, padding):
    """'winograd5' or 'gemm' for a 5x5 / stride-1 shape that ``conv``'s 'auto' found eligible."""
    return "gemm"


def forward(x, w, b, padding, y, int nt, int tile=2):
    raise NotImplementedError("conv2d: algo 'winograd5' is not implemented yet")


def backward_input(dy, w, padding, dx, int nt, int tile=2):
    """dx = the forward conv of dy with the flipped, transposed filters and padding 4 - p."""
    import numpy as np
    wt = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return forward(dy, wt, None, (4 - padding[0], 4 - padding[1]), dx, nt, tile)
