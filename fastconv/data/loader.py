"""DataLoader: seeded shuffling, batching, drop_last, background prefetch."""
import queue
import threading

import numpy as np

from .._xp import to_device
from ..tensor import Tensor


class DataLoader:
    """Iterate (images, labels) Tensors over an ArrayDataset.

    shuffle with ``seed`` gives the same order every run (epoch e uses
    seed + e); ``transform(x, rng)`` augments each batch; ``prefetch`` batches
    are prepared on a background thread; ``device`` moves batches to 'cuda'.
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, seed=0, drop_last=False, transform=None,
                 prefetch=2, device="cpu"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.drop_last, self.transform = seed, drop_last, transform
        self.prefetch, self.device = prefetch, device
        self.epoch = 0

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _batches(self, epoch):
        n = len(self.dataset)
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = self.dataset[idx]
            if self.device != "cpu":
                x, y = to_device(x, self.device), to_device(y, self.device)
            if self.transform is not None:
                x = self.transform(x, rng)
            yield x, y

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if not self.prefetch:
            for x, y in self._batches(epoch):
                yield Tensor(x), Tensor(y)
            return
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def work():
            try:
                for item in self._batches(epoch):
                    if stop.is_set():
                        return
                    q.put(item)
            except BaseException as exc:  # surface worker errors in the consumer
                q.put(exc)
            q.put(done)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield Tensor(item[0]), Tensor(item[1])
        finally:
            stop.set()
            while t.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    t.join(0.01)
