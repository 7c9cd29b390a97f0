"""Autograd fast paths: basic-index GetItem backward (assignment instead of np.add.at) and
in-place gradient accumulation / adoption of gradients nobody else holds."""
import numpy as np
import pytest
import torch

import fastconv as fc
import fastconv.functional as F


@pytest.mark.parametrize("index", [
    (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2)),
    (1, Ellipsis, slice(1, 4)),
    (slice(None, None, -1), None, 2),
    (Ellipsis, slice(-3, None), np.int64(0)),
])
def test_getitem_basic_index_backward_matches_torch(index):
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    fx = fc.Tensor(x, requires_grad=True)
    y = fx[index]
    dy = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    tindex = tuple(int(i) if isinstance(i, np.integer) else i for i in index)
    if any(isinstance(i, slice) and i.step is not None and i.step < 0 for i in tindex):  # torch has no negative steps
        ref = np.zeros_like(x)
        ref[index] = dy
        np.testing.assert_array_equal(fx.grad, ref)
        return
    tx[tindex].backward(torch.tensor(dy))
    np.testing.assert_allclose(fx.grad, tx.grad.numpy(), rtol=0, atol=0)


def test_getitem_advanced_index_still_accumulates_repeats():
    fx = fc.Tensor(np.arange(5.0), requires_grad=True)
    idx = np.array([0, 2, 2, 4, 2])
    fx[idx].sum().backward()
    np.testing.assert_array_equal(fx.grad, [1, 0, 3, 0, 1])
    fx.grad = None
    fx[np.array([True, False, True, False, False])].sum().backward()
    np.testing.assert_array_equal(fx.grad, [1, 0, 1, 0, 0])


def test_accumulation_in_place_is_exact_and_invisible():
    """A tensor used by several ops: its gradient sums are right, and arrays that others
    still hold (a user's .grad from an earlier backward, an op's upstream gradient) are
    never written."""
    rng = np.random.default_rng(2)
    x = fc.Tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True)
    w = fc.Tensor(rng.standard_normal((3, 3, 3, 3)), requires_grad=True)
    tx, tw = torch.tensor(x.data, requires_grad=True), torch.tensor(w.data, requires_grad=True)

    def f(x, w, conv, relu):
        h = relu(conv(x, w, padding=1))   # h feeds three consumers: two convs and an add
        return (conv(h, w, padding=1) + h + conv(h, w, padding=1) * 2).sum()

    f(x, w, F.conv2d, F.relu).backward()
    f(tx, tw, torch.nn.functional.conv2d, torch.relu).backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    held = w.grad
    held_copy = held.copy()
    f(x, w, F.conv2d, F.relu).backward()  # accumulates into w.grad: a new array, held is untouched
    np.testing.assert_array_equal(held, held_copy)
    np.testing.assert_allclose(w.grad, 2 * held_copy, rtol=1e-12)


def test_same_array_returned_for_two_inputs_is_not_updated_in_place():
    """Add's backward hands the same array to both inputs; accumulating into one of them
    must not change the other's."""
    a = fc.Tensor(np.ones(3), requires_grad=True)
    b = fc.Tensor(np.ones(3), requires_grad=True)
    s = a + b
    (s + s * 3 + a * 5).sum().backward()
    np.testing.assert_array_equal(a.grad, [9, 9, 9])
    np.testing.assert_array_equal(b.grad, [4, 4, 4])


def test_leaf_gradient_is_not_an_alias_of_a_saved_array():
    """dloss/dx of y = x * c is c itself inside Mul's backward; the leaf gets its own copy."""
    c = np.arange(3.0)
    x = fc.Tensor(np.ones(3), requires_grad=True)
    y = (x * fc.Tensor(c)).sum()
    y.backward()
    x.grad += 1
    np.testing.assert_array_equal(c, [0, 1, 2])


def test_linear_small_gemm_runs_on_one_blas_thread_and_restores():
    from fastconv.functional._base import _NumpyBlas, blas_threads

    lib = _NumpyBlas.get()
    if lib is None:
        pytest.skip("threadpoolctl cannot see NumPy's BLAS")  # capability gate: nothing to control
    before = lib.get_num_threads()
    seen = []
    with blas_threads(1):
        seen.append(lib.get_num_threads())
    assert seen == [1] and lib.get_num_threads() == before
    with blas_threads(None):
        assert lib.get_num_threads() == before
    with blas_threads(before + 1):  # a cap, never a raise
        assert lib.get_num_threads() == before
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 120)).astype(np.float32)
    w = rng.standard_normal((84, 120)).astype(np.float32)
    b = rng.standard_normal(84).astype(np.float32)
    fx, fw, fb = (fc.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.linear(fx, fw, fb)
    y.backward(np.ones((64, 84), np.float32))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.linear(tx, tw, tb).backward(torch.ones(64, 84))
    np.testing.assert_allclose(y.numpy(), torch.nn.functional.linear(tx, tw, tb).detach().numpy(), rtol=1e-5, atol=1e-4)
    for a, t in ((fx, tx), (fw, tw), (fb, tb)):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), rtol=1e-5, atol=1e-4)
    assert lib.get_num_threads() == before


@pytest.mark.parametrize("shape,planes", [((2, 3, 6, 5), 8), ((1, 4, 7, 7), 16)])
def test_cifar_pad_shortcut_matches_torch_and_gradcheck(shape, planes):
    """The option-A shortcut (strided slice + cat): its backward runs the basic-index GetItem path."""
    from fastconv.models.resnet import PadShortcut

    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape)
    p = planes // 4
    fx, tx = fc.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    fy = PadShortcut(planes)(fx)
    ty = torch.nn.functional.pad(tx[:, :, ::2, ::2], (0, 0, 0, 0, p, p))
    dy = rng.standard_normal(ty.shape)
    fy.backward(dy)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(fy.numpy(), ty.detach().numpy())
    np.testing.assert_array_equal(fx.grad, tx.grad.numpy())
    from fastconv.testing import gradcheck

    assert gradcheck(lambda t: PadShortcut(planes)(t), [fc.Tensor(x, requires_grad=True)])
