"""Dataset readers: arrays in memory, NCHW float32 images and int64 labels."""
import gzip
import os
import pickle
import struct

import numpy as np


class DatasetError(ValueError):
    """A dataset file is missing or not in the expected format."""


class ArrayDataset:
    """Images (N, C, H, W) float32 and labels (N,) int64, plus class names."""

    def __init__(self, images, labels, classes=None, name="dataset"):
        images = np.ascontiguousarray(images, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if images.ndim != 4:
            raise ValueError(f"ArrayDataset: images must be (N, C, H, W), got shape {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"ArrayDataset: labels shape {labels.shape} does not match {images.shape[0]} images")
        self.images, self.labels, self.name = images, labels, name
        n_cls = int(labels.max()) + 1 if labels.size else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_cls)]

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]

    @property
    def num_classes(self):
        return len(self.classes)

    def subset(self, idx, name=None):
        return ArrayDataset(self.images[idx], self.labels[idx], self.classes, name or self.name)


def split(ds, fractions=(0.8, 0.1, 0.1), seed=0, stratify=True):
    """Split into len(fractions) datasets (train/val/test), seeded, stratified by label."""
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"split: fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fr]
    groups = [np.flatnonzero(ds.labels == c) for c in np.unique(ds.labels)] if stratify else [np.arange(len(ds))]
    for idx in groups:
        idx = rng.permutation(idx)
        bounds = np.round(np.cumsum(fr) * len(idx)).astype(int)
        start = 0
        for i, end in enumerate(bounds):
            parts[i].append(idx[start:end])
            start = end
    names = ["train", "val", "test"] + [f"part{i}" for i in range(3, len(fr))]
    return tuple(ds.subset(np.sort(np.concatenate(p)), f"{ds.name}-{names[i]}") for i, p in enumerate(parts))


def load_digits(size=None):
    """scikit-learn's 1797 8x8 digits scaled to [0, 1]; ``size`` resizes (e.g. 32 for LeNet-5)."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    images = (d.images.astype(np.float32) / 16.0)[:, None]
    if size is not None and size != 8:
        from .transforms import resize

        images = resize(images, (size, size))
    return ArrayDataset(images, d.target, [str(i) for i in range(10)], "digits")


def _read_idx(path, expect_dims):
    if not os.path.exists(path):
        raise DatasetError(f"missing file {path!r} (expected an IDX file, optionally gzip-compressed)")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08 or ndim != expect_dims:
            raise DatasetError(f"{path!r}: not an unsigned-byte IDX file with {expect_dims} dimensions "
                               f"(magic {zero}, type {dtype_code:#x}, ndim {ndim})")
        dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
        body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        if body.size != int(np.prod(dims)):
            raise DatasetError(f"{path!r}: truncated IDX file: header says {dims} ({int(np.prod(dims))} bytes), "
                               f"found {body.size} bytes")
        return body.reshape(dims)
    except (OSError, struct.error, EOFError) as exc:
        raise DatasetError(f"{path!r}: cannot read IDX file ({exc})") from None


def _find(root, names):
    for n in names:
        for cand in (n, n + ".gz"):
            p = os.path.join(root, cand)
            if os.path.exists(p):
                return p
    return os.path.join(root, names[0])


def load_mnist(root, train=True):
    """MNIST or Fashion-MNIST from ``root`` holding train-images-idx3-ubyte[.gz] etc."""
    prefix = "train" if train else "t10k"
    img = _read_idx(_find(root, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]), 3)
    lab = _read_idx(_find(root, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"]), 1)
    if img.shape[0] != lab.shape[0]:
        raise DatasetError(f"{root!r}: {img.shape[0]} images but {lab.shape[0]} labels")
    return ArrayDataset(img[:, None].astype(np.float32) / 255.0, lab.astype(np.int64), name="mnist")


def load_cifar(root, train=True):
    """CIFAR-10 (data_batch_1..5, test_batch) or CIFAR-100 (train, test) python batches from ``root``."""
    c10 = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    c100 = ["train"] if train else ["test"]
    if all(os.path.exists(os.path.join(root, f)) for f in c10):
        files, label_key, meta, meta_key = c10, b"labels", "batches.meta", b"label_names"
    elif all(os.path.exists(os.path.join(root, f)) for f in c100):
        files, label_key, meta, meta_key = c100, b"fine_labels", "meta", b"fine_label_names"
    else:
        raise DatasetError(f"{root!r}: expected CIFAR-10 python batches ({', '.join(c10)}) or CIFAR-100 "
                           f"({', '.join(c100)}) as extracted from cifar-10-python.tar.gz")
    xs, ys = [], []
    for f in files:
        try:
            with open(os.path.join(root, f), "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8)
            y = np.asarray(d[label_key], dtype=np.int64)
        except Exception as exc:
            raise DatasetError(f"{os.path.join(root, f)!r}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
        if x.ndim != 2 or x.shape[1] != 3072 or x.shape[0] != y.shape[0]:
            raise DatasetError(f"{os.path.join(root, f)!r}: data shape {x.shape} / labels {y.shape}; expected (N, 3072) / (N,)")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    classes = None
    mp = os.path.join(root, meta)
    if os.path.exists(mp):
        with open(mp, "rb") as fh:
            classes = [c.decode() for c in pickle.load(fh, encoding="bytes")[meta_key]]
    return ArrayDataset(np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys), classes, "cifar")


def load_image_folder(root, size=None, grayscale=False):
    """Images in ``root/<class>/*.png|jpg`` (Pillow); every image resized to ``size`` (int or (h, w))."""
    from PIL import Image

    if not os.path.isdir(root):
        raise DatasetError(f"{root!r}: not a directory; expected root/<class_name>/<image files>")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DatasetError(f"{root!r}: no class sub-folders; expected root/<class_name>/<image files>")
    exts = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
    imgs, labels = [], []
    if isinstance(size, int):
        size = (size, size)
    for ci, c in enumerate(classes):
        for fn in sorted(os.listdir(os.path.join(root, c))):
            if not fn.lower().endswith(exts):
                continue
            path = os.path.join(root, c, fn)
            try:
                im = Image.open(path)
                im = im.convert("L" if grayscale else "RGB")
            except Exception as exc:
                raise DatasetError(f"{path!r}: cannot read image ({type(exc).__name__}: {exc})") from None
            if size is not None:
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
            imgs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            labels.append(ci)
    if not imgs:
        raise DatasetError(f"{root!r}: no image files ({', '.join(exts)}) in the class folders")
    shapes = {i.shape for i in imgs}
    if len(shapes) > 1:
        raise DatasetError(f"{root!r}: images have different sizes {sorted(shapes)[:3]}...; pass size=")
    return ArrayDataset(np.stack(imgs), np.asarray(labels), classes, os.path.basename(os.path.normpath(root)))


def load_splits(spec, size=None, fractions=(0.8, 0.1, 0.1), seed=0):
    """(train, val, test) for a dataset spec.  Datasets with a separate test
    file (MNIST, CIFAR) keep it as the test split and carve the validation
    split out of the training file; the others are split three ways."""
    kind = spec.partition(":")[0]
    if kind in ("mnist", "fashion", "fashion-mnist", "cifar10", "cifar100", "cifar"):
        full = load_dataset(spec, True, size)
        test = load_dataset(spec, False, size)
        val_frac = fractions[1] / (fractions[0] + fractions[1])
        train, val = split(full, (1.0 - val_frac, val_frac), seed)
        return train, val, test.subset(np.arange(len(test)), f"{test.name}-test")
    return split(load_dataset(spec, True, size), fractions, seed)


def load_dataset(spec, train=True, size=None):
    """'digits' | 'mnist:PATH' | 'fashion:PATH' | 'cifar10:PATH' | 'cifar100:PATH' | 'folder:PATH'."""
    if not isinstance(spec, str):
        raise TypeError(f"dataset spec must be a string such as 'digits' or 'mnist:PATH', got {type(spec).__name__}")
    kind, _, path = spec.partition(":")
    if kind == "digits":
        return load_digits(size)
    if not path:
        raise ValueError(f"dataset {spec!r}: expected KIND:PATH (mnist, fashion, cifar10, cifar100, folder)")
    if kind in ("mnist", "fashion", "fashion-mnist"):
        ds = load_mnist(path, train)
    elif kind in ("cifar10", "cifar100", "cifar"):
        ds = load_cifar(path, train)
    elif kind == "folder":
        return load_image_folder(path, size)  # resized while reading
    else:
        raise ValueError(f"dataset {spec!r}: unknown kind {kind!r}; expected digits, mnist, fashion, cifar10, cifar100, folder")
    if size is not None and ds.images.shape[-1] != size:
        from .transforms import resize

        ds = ArrayDataset(resize(ds.images, (size, size)), ds.labels, ds.classes, ds.name)
    return ds
