"""Autotuning of the Cython conv's algorithm (``fastconv.config.autotune = True``).

With the switch on, a call with ``algo='auto'`` looks its configuration up (op, shapes, stride,
padding, dilation, groups, dtype, thread count); the first time, it runs every candidate
algorithm on the call's own arrays, twice each (the first run absorbs one-time costs: scratch
buffers, first touch), times the second, and caches the fastest.  Later calls with the same
configuration run the winner directly.  Candidates: every algorithm ``conv`` accepts for the
configuration (forcing it does not raise), except the direct loops where 'auto' would not pick
them and the layer is not depthwise (there they are scalar fallbacks, orders of magnitude slower
on large layers).  Off (the default), 'auto' uses the shape rules of ``conv._setup``.
"""
import threading
import time

from fastconv import config as _config

_cache = {}
_lock = threading.Lock()
_clock = time.perf_counter  # (tests replace it)


def cache():
    """A copy of the cache: {(op, x_shape, w_shape, stride, padding, dilation, groups, dtype,
    threads): algo}."""
    with _lock:
        return dict(_cache)


def clear():
    with _lock:
        _cache.clear()


def _candidates(setup, algos, op, x_shape, w_shape, conf, dtype):
    out = []
    auto = setup(op, x_shape, w_shape, *conf, "auto", dtype)[1]
    for a in algos:
        if a == "auto" or (a == "direct" and auto != "direct" and w_shape[1] != 1):
            continue
        try:
            setup(op, x_shape, w_shape, *conf, a, dtype)
        except ValueError:
            continue
        out.append(a)
    return out or [auto]


def choose(setup, algos, op, x_shape, w_shape, conf, dtype, run):
    """The algorithm for this configuration: cached, or timed now with ``run(algo)`` (which calls
    the op on the caller's arrays with that algorithm forced).  ``conf`` = (stride, padding,
    dilation, groups) as the caller got them."""
    key = (op, tuple(x_shape), tuple(w_shape), *(c if isinstance(c, int) else tuple(c) for c in conf),
           str(dtype), _config.get_num_threads())
    with _lock:
        algo = _cache.get(key)
    if algo is not None:
        return algo
    best = None
    for a in _candidates(setup, algos, op, x_shape, w_shape, conf, dtype):
        run(a)
        t0 = _clock()
        run(a)
        dt = _clock() - t0
        if best is None or dt < best[0]:
            best = (dt, a)
    with _lock:
        _cache[key] = best[1]
    return best[1]


def enabled(algo):
    return algo == "auto" and bool(_config.autotune)
