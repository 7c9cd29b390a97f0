"""Datasets, loaders and batch transforms.

scikit-learn's 8x8 digits is embedded (no download).  MNIST/Fashion-MNIST
IDX files, CIFAR-10/100 python batches and image folders are read from a
local path; a missing or malformed file raises a clear error naming the
expected path and format.  Nothing is fetched from the network.
"""
from .datasets import (ArrayDataset, DatasetError, load_cifar, load_dataset, load_digits, load_image_folder,
                       load_mnist, load_splits, split)
from .loader import DataLoader
from . import transforms

__all__ = ["ArrayDataset", "DatasetError", "DataLoader", "load_digits", "load_mnist", "load_cifar",
           "load_image_folder", "load_dataset", "load_splits", "split", "transforms"]
