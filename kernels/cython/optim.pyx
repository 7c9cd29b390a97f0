# cython: language_level=3
"""Optimizer steps on the CPU: one OpenMP pass over a (flat) parameter buffer.

Each element is read and written once per step (Adam: param, grad, two
moments = 28 bytes/param in float32), so the kernels are bound by memory
bandwidth; the arithmetic follows torch.optim's update rules.  The loops are
in ``_optim_impl.h`` (restrict pointers, ``omp parallel for simd``).
"""
import numpy as np
cimport numpy as cnp

from ..reference import optim as R
from ._threads import num_threads

__all__ = ["sgd_step", "adagrad_step", "adam_step"]

cdef extern from "_optim_impl.h" nogil:
    void fc_adam_f32(float*, const float*, float*, float*, Py_ssize_t, float, float, float, float, float,
                     float, float, int)
    void fc_adam_f64(double*, const double*, double*, double*, Py_ssize_t, double, double, double, double,
                     double, double, double, int)
    void fc_sgd_f32(float*, const float*, float*, Py_ssize_t, float, float, float, float, int, int, int, int)
    void fc_sgd_f64(double*, const double*, double*, Py_ssize_t, double, double, double, double, int, int, int,
                    int)
    void fc_adagrad_f32(float*, const float*, float*, Py_ssize_t, float, float, float, int)
    void fc_adagrad_f64(double*, const double*, double*, Py_ssize_t, double, double, double, int)

cdef Py_ssize_t GRAIN = 65536


cdef inline void* _ptr(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


def sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """SGD with optional momentum / Nesterov / weight decay, in place (torch.optim.SGD's rule:
    the momentum buffer is set to the gradient on the first step)."""
    param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step = R.check_sgd(
        param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov, first_step, device="cpu")
    cdef int has_buf = momentum != 0
    if not has_buf:
        momentum_buf = param  # unused by the kernel
    cdef Py_ssize_t n = param.size
    cdef int nt = num_threads(n, GRAIN), nest = bool(nesterov), first = bool(first_step)
    cdef void *pp = _ptr(param)
    cdef void *pg = _ptr(grad)
    cdef void *pb = _ptr(momentum_buf)
    cdef double lr_ = lr, mom = momentum, damp = dampening, wd = weight_decay
    if param.dtype == np.float32:
        with nogil:
            fc_sgd_f32(<float*>pp, <float*>pg, <float*>pb, n, lr_, mom, damp, wd, nest, first,
                       has_buf, nt)
    else:
        with nogil:
            fc_sgd_f64(<double*>pp, <double*>pg, <double*>pb, n, lr_, mom, damp, wd, nest,
                       first, has_buf, nt)


def adagrad_step(param, grad, state_sum, step, lr, lr_decay, weight_decay, eps):
    """Adagrad in place (torch.optim.Adagrad's rule); ``step`` is 1-based."""
    param, grad, state_sum, step, lr, lr_decay, weight_decay, eps = R.check_adagrad(
        param, grad, state_sum, step, lr, lr_decay, weight_decay, eps, device="cpu")
    cdef double clr = lr / (1 + (step - 1) * lr_decay)
    cdef Py_ssize_t n = param.size
    cdef int nt = num_threads(n, GRAIN)
    cdef void *pp = _ptr(param)
    cdef void *pg = _ptr(grad)
    cdef void *ps = _ptr(state_sum)
    cdef double wd = weight_decay, e = eps
    if param.dtype == np.float32:
        with nogil:
            fc_adagrad_f32(<float*>pp, <float*>pg, <float*>ps, n, clr, wd, e, nt)
    else:
        with nogil:
            fc_adagrad_f64(<double*>pp, <double*>pg, <double*>ps, n, clr, wd, e, nt)


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam (decoupled=False) or AdamW (decoupled=True) in place; ``step`` is 1-based."""
    param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled = R.check_adam(
        param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled, device="cpu")
    cdef double step_size = lr / (1 - beta1 ** step)
    cdef double inv_bc2_sqrt = 1.0 / (1 - beta2 ** step) ** 0.5
    cdef double decay = 1 - lr * weight_decay if decoupled else 1.0
    cdef double l2 = 0.0 if decoupled else weight_decay
    cdef Py_ssize_t n = param.size
    cdef int nt = num_threads(n, GRAIN)
    cdef void *pp = _ptr(param)
    cdef void *pg = _ptr(grad)
    cdef void *pm = _ptr(exp_avg)
    cdef void *pv = _ptr(exp_avg_sq)
    cdef double b1 = beta1, b2 = beta2, e = eps
    if param.dtype == np.float32:
        with nogil:
            fc_adam_f32(<float*>pp, <float*>pg, <float*>pm, <float*>pv, n, decay, l2, b1, b2, e, step_size,
                        inv_bc2_sqrt, nt)
    else:
        with nogil:
            fc_adam_f64(<double*>pp, <double*>pg, <double*>pm, <double*>pv, n, decay, l2, b1, b2, e, step_size,
                        inv_bc2_sqrt, nt)
