"""fastconv.data: readers on small files written here, splits, DataLoader, batch transforms."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from fastconv import data
from fastconv.data import DatasetError, transforms as T


# ---------------------------------------------------------------- digits and splits
def test_digits_embedded_and_resized():
    ds = data.load_digits()
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int64 and set(ds.labels.tolist()) == set(range(10))
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    big = data.load_digits(32)
    assert big.images.shape == (1797, 1, 32, 32)
    np.testing.assert_array_equal(big.labels, ds.labels)


def test_split_stratified_disjoint_seeded():
    ds = data.load_digits()
    tr, va, te = data.split(ds, (0.8, 0.1, 0.1), seed=3)
    assert len(tr) + len(va) + len(te) == len(ds)
    # every image lands in exactly one split: compare as rows
    rows = lambda d: {r.tobytes() + bytes([l]) for r, l in zip(d.images.reshape(len(d), -1), d.labels)}  # noqa: E731
    assert not (rows(tr) & rows(te)) and not (rows(tr) & rows(va))
    for c in range(10):  # stratified: each class ~10 % in the test split
        frac = (te.labels == c).sum() / (ds.labels == c).sum()
        assert 0.05 < frac < 0.15
    tr2, _, _ = data.split(ds, (0.8, 0.1, 0.1), seed=3)
    np.testing.assert_array_equal(tr.images, tr2.images)
    with pytest.raises(ValueError, match="sum to 1"):
        data.split(ds, (0.5, 0.2))


# ---------------------------------------------------------------- IDX (MNIST / Fashion-MNIST)
def _write_idx(path, arr, compress=False):
    arr = np.asarray(arr, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(raw)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_reader(tmp_path, compress):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labs = rng.integers(0, 10, 7, dtype=np.uint8)
    ext = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", imgs, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", labs, compress)
    ds = data.load_mnist(str(tmp_path))
    assert ds.images.shape == (7, 1, 28, 28) and ds.images.dtype == np.float32
    np.testing.assert_allclose(ds.images[:, 0] * 255, imgs, atol=1e-4)
    np.testing.assert_array_equal(ds.labels, labs)
    ds32 = data.load_dataset(f"mnist:{tmp_path}", size=32)
    assert len(data.load_dataset(f"fashion:{tmp_path}")) == 7  # Fashion-MNIST: same IDX layout
    assert ds32.images.shape == (7, 1, 32, 32)


def test_mnist_errors_name_path_and_format(tmp_path):
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*IDX"):
        data.load_mnist(str(tmp_path))
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 5, 5)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(DatasetError, match="4 images but 3 labels"):
        data.load_mnist(str(tmp_path))
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DatasetError, match="truncated IDX"):
        data.load_mnist(str(tmp_path))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x08\x03" + raw[4:])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*not an unsigned-byte IDX"):
        data.load_mnist(str(tmp_path))


# ---------------------------------------------------------------- CIFAR python batches
def _cifar_batch(path, n, rng, key=b"labels", n_cls=10):
    d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: rng.integers(0, n_cls, n).tolist()}
    with open(path, "wb") as f:
        pickle.dump(d, f)
    return d


def test_cifar10_reader(tmp_path):
    rng = np.random.default_rng(1)
    batches = [_cifar_batch(tmp_path / f"data_batch_{i}", 3, rng) for i in range(1, 6)]
    test = _cifar_batch(tmp_path / "test_batch", 4, rng)
    names = [f"c{i}" for i in range(10)]
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names]}, f)
    tr = data.load_cifar(str(tmp_path), train=True)
    assert tr.images.shape == (15, 3, 32, 32) and tr.classes == names
    # row layout: 1024 red, 1024 green, 1024 blue, each row-major 32x32
    np.testing.assert_allclose(tr.images[0] * 255, batches[0][b"data"][0].reshape(3, 32, 32), atol=1e-4)
    np.testing.assert_array_equal(tr.labels[3:6], batches[1][b"labels"])
    te = data.load_dataset(f"cifar10:{tmp_path}", train=False)
    assert len(te) == 4
    np.testing.assert_array_equal(te.labels, test[b"labels"])
    a, b, c = data.load_splits(f"cifar10:{tmp_path}", fractions=(0.6, 0.4, 0.0))
    assert len(a) + len(b) == 15 and len(c) == 4


def test_cifar100_reader_and_errors(tmp_path):
    rng = np.random.default_rng(2)
    _cifar_batch(tmp_path / "train", 5, rng, b"fine_labels", 100)
    _cifar_batch(tmp_path / "test", 2, rng, b"fine_labels", 100)
    assert data.load_cifar(str(tmp_path)).images.shape == (5, 3, 32, 32)
    (tmp_path / "test").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=r"test.*not a CIFAR python batch"):
        data.load_cifar(str(tmp_path), train=False)
    with pytest.raises(DatasetError, match=r"data_batch_1.*cifar-10-python"):
        data.load_cifar(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------- image folders
def test_image_folder_reader(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    expect = {}
    for cls, n in (("cat", 2), ("dog", 3)):
        os.makedirs(tmp_path / cls)
        for i in range(n):
            a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / cls / f"{i}.png")
            expect[(cls, i)] = a
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    ds = data.load_image_folder(str(tmp_path))
    assert ds.classes == ["cat", "dog"] and ds.images.shape == (5, 3, 6, 5)
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 1])
    np.testing.assert_allclose(ds.images[2] * 255, expect[("dog", 0)].transpose(2, 0, 1), atol=1e-3)
    small = data.load_dataset(f"folder:{tmp_path}", size=4)
    assert small.images.shape == (5, 3, 4, 4)
    (tmp_path / "dog" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"bad\.png.*cannot read image"):
        data.load_image_folder(str(tmp_path))
    with pytest.raises(DatasetError, match="root/<class_name>"):
        data.load_image_folder(str(tmp_path / "missing"))


def test_dataset_spec_errors():
    with pytest.raises(ValueError, match="KIND:PATH"):
        data.load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown kind"):
        data.load_dataset("imagenet:/x")


# ---------------------------------------------------------------- DataLoader
def _toy(n=23):
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    return data.ArrayDataset(x, np.arange(n) % 3)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_loader_batches_shuffle_seed(prefetch):
    ds = _toy()
    dl = data.DataLoader(ds, 5, shuffle=True, seed=7, prefetch=prefetch)
    assert len(dl) == 5
    ep0 = [(x.numpy().copy(), y.numpy().copy()) for x, y in dl]
    ep1 = [x.numpy()[:, 0, 0, 0].copy() for x, _ in dl]
    assert [len(x) for x, _ in ep0] == [5, 5, 5, 5, 3]
    seen = np.concatenate([x[:, 0, 0, 0] for x, _ in ep0])
    assert sorted(seen.tolist()) == list(range(23))  # every sample once
    for x, y in ep0:  # images and labels stay paired
        np.testing.assert_array_equal(x[:, 0, 0, 0].astype(int) % 3, y)
    assert not np.array_equal(seen, np.concatenate(ep1))  # a new order each epoch
    again = data.DataLoader(ds, 5, shuffle=True, seed=7, prefetch=2 - prefetch)
    np.testing.assert_array_equal(np.concatenate([x.numpy()[:, 0, 0, 0] for x, _ in again]), seen)
    dl.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate([x.numpy()[:, 0, 0, 0] for x, _ in dl]), np.concatenate(ep1))
    other = data.DataLoader(ds, 5, shuffle=True, seed=8)
    assert not np.array_equal(np.concatenate([x.numpy()[:, 0, 0, 0] for x, _ in other]), seen)


def test_loader_drop_last_no_shuffle_and_errors():
    ds = _toy()
    dl = data.DataLoader(ds, 5, drop_last=True)
    xs = [x.numpy()[:, 0, 0, 0] for x, _ in dl]
    assert len(dl) == 4 and [len(x) for x in xs] == [5] * 4
    np.testing.assert_array_equal(np.concatenate(xs), np.arange(20))
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(ds, 0)

    def boom(x, rng):
        raise RuntimeError("transform failed")

    with pytest.raises(RuntimeError, match="transform failed"):
        list(data.DataLoader(ds, 5, transform=boom, prefetch=2))
    it = iter(data.DataLoader(ds, 1, prefetch=1))  # abandoning an epoch early does not hang
    next(it)
    it.close()


# ---------------------------------------------------------------- transforms
def test_normalize():
    x = np.random.default_rng(0).random((4, 3, 5, 5)).astype(np.float32)
    out = T.normalize(x, [0.1, 0.2, 0.3], [0.5, 1.0, 2.0])
    np.testing.assert_allclose(out[:, 1], x[:, 1] - 0.2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], (x[:, 2] - 0.3) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="zero"):
        T.normalize(x, [0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        T.normalize(x[0], [0], [1])


def test_random_crop_windows():
    rng = np.random.default_rng(0)
    x = rng.random((6, 2, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(T.random_crop(x, (5, 7), 0, rng), x)
    out = T.random_crop(x, (5, 7), 2, np.random.default_rng(1))
    assert out.shape == x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(6):  # every crop is a window of its own padded image
        assert any(np.array_equal(out[i], pad[i, :, t:t + 5, l:l + 7]) for t in range(5) for l in range(5))
    with pytest.raises(ValueError, match="larger"):
        T.random_crop(x, 9)


def test_hflip_and_rotation():
    x = np.random.default_rng(0).random((5, 1, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(T.random_hflip(x, 1.0), x[..., ::-1])
    np.testing.assert_array_equal(T.random_hflip(x, 0.0), x)
    np.testing.assert_allclose(T.random_rotation(x, 0.0), x, atol=1e-6)
    rot = T.random_rotation(x, 30, np.random.default_rng(2))
    assert rot.shape == x.shape and rot.dtype == x.dtype and not np.allclose(rot, x)
    # a 180-degree rotation of the pixel grid about its centre is exact
    np.testing.assert_allclose(T._sample(x, *_rot_grid(6, np.pi)), x[:, :, ::-1, ::-1], atol=1e-5)


def _rot_grid(n, ang):
    c = (n - 1) / 2
    yy, xx = np.meshgrid(np.arange(n) - c, np.arange(n) - c, indexing="ij")
    ys = np.cos(ang) * yy - np.sin(ang) * xx + c
    xs = np.sin(ang) * yy + np.cos(ang) * xx + c
    return np.broadcast_to(ys, (5, n, n)), np.broadcast_to(xs, (5, n, n))


@pytest.mark.parametrize("src,dst", [((8, 8), (32, 32)), ((9, 7), (4, 5)), ((5, 5), (5, 5))])
def test_resize_matches_torch(src, dst):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 3) + src).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(T.resize(x, dst), want.numpy(), atol=1e-5)


def test_augmentation_in_loader_preserves_labels_and_shapes():
    ds = data.load_digits(16).subset(np.arange(40))
    aug = T.Compose(T.RandomCrop(16, padding=2), T.RandomHorizontalFlip(), T.RandomRotation(15),
                    T.Normalize([0.3], [0.4]), T.Resize(12))
    dl = data.DataLoader(ds, 16, shuffle=True, seed=1, transform=aug)
    ys = []
    for x, y in dl:
        assert x.shape[1:] == (1, 12, 12) and x.dtype == np.float32 and np.isfinite(x.numpy()).all()
        ys.append(y.numpy())
    order = np.random.default_rng((1, 0)).permutation(40)
    np.testing.assert_array_equal(np.concatenate(ys), ds.labels[order])
    a = np.concatenate([x.numpy() for x, _ in data.DataLoader(ds, 16, shuffle=True, seed=1, transform=aug)])
    b = np.concatenate([x.numpy() for x, _ in data.DataLoader(ds, 16, shuffle=True, seed=1, transform=aug)])
    np.testing.assert_array_equal(a, b)  # seeded augmentation repeats


def test_transforms_on_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    from fastconv.dispatch import gpu_status

    if not gpu_status()[0]:
        pytest.skip("no GPU")
    x = np.random.default_rng(0).random((3, 2, 8, 8)).astype(np.float32)
    g = cupy.asarray(x)
    np.testing.assert_allclose(T.resize(g, 5).get(), T.resize(x, 5), atol=1e-6)
    np.testing.assert_allclose(T.normalize(g, [0.5, 0.5], [2, 2]).get(), T.normalize(x, [0.5, 0.5], [2, 2]), atol=1e-6)
    for f in (lambda a, r: T.random_crop(a, 8, 2, r), lambda a, r: T.random_hflip(a, 0.5, r),
              lambda a, r: T.random_rotation(a, 20, r)):
        np.testing.assert_allclose(f(g, np.random.default_rng(4)).get(), f(x, np.random.default_rng(4)), atol=1e-5)
