"""
Fixed-size ring buffers of samples resampled onto the model's time grid.

Every stream (encoders, EMG) is written onto the same grid t_k = origin + k h as it arrives,
by linear interpolation (or holding the last value) between consecutive samples, so the
memory used is fixed by the window length, whatever the input rate.  A gap longer than
``max_gap`` marks the grid points inside it invalid instead of bridging it.
"""

import math

import numpy as np


class GridBuffer:
    """Ring of ``capacity`` grid samples of ``width`` values each."""

    def __init__(self, capacity, width, h, hold=False, max_gap=0.05, required=None):
        self.capacity = int(capacity)
        self.width = int(width)
        self.h = float(h)
        self.hold = hold
        self.max_gap = float(max_gap)
        # columns that must be finite for a sample to count (others may be NaN: "absent")
        self.required = np.ones(self.width, dtype=bool) if required is None else \
            np.asarray(required, dtype=bool)
        self.values = np.zeros((self.capacity, self.width))
        self.valid = np.zeros(self.capacity, dtype=bool)
        self.reset()

    def reset(self, origin=None):
        """Forget everything; grid points are counted from ``origin`` (s)."""
        self.origin = origin
        self.newest = -1               # absolute index of the newest grid sample written
        self.oldest = 0
        self.prev_t = None
        self.prev_x = None
        self.valid[:] = False

    def _write(self, k, x, ok):
        slot = k % self.capacity
        self.values[slot] = x
        self.valid[slot] = ok
        self.newest = k
        self.oldest = max(self.oldest, k - self.capacity + 1)

    def push(self, t, x):
        """
        Add one sample at time t (s); returns the number of grid samples written.

        Returns -1 (and writes nothing) if t is not after the previous sample.
        """
        x = np.asarray(x, dtype=float).reshape(self.width)
        if self.origin is None:
            self.origin = t
        if self.prev_t is not None and t <= self.prev_t:
            return -1
        if self.prev_t is None:
            k = (t - self.origin) / self.h
            if abs(k - round(k)) < 1e-6:
                self.oldest = max(0, int(round(k)))
                self._write(int(round(k)), x, True)
            else:
                self.oldest = max(0, math.ceil(k))
            self.prev_t, self.prev_x = t, x
            return int(self.newest >= 0)
        first = max(self.newest + 1, math.ceil((self.prev_t - self.origin) / self.h - 1e-9))
        last = math.floor((t - self.origin) / self.h + 1e-9)
        ok = (t - self.prev_t) <= self.max_gap
        span = t - self.prev_t
        written = 0
        for k in range(first, last + 1):
            tk = self.origin + k * self.h
            if self.hold:
                value = self.prev_x if tk < t - 1e-6 * self.h else x
            else:
                w = min(1.0, max(0.0, (tk - self.prev_t) / span))
                value = (1.0 - w) * self.prev_x + w * x
            on_sample = abs(tk - t) <= 1e-6 * self.h
            fine = (ok or on_sample) and np.all(np.isfinite(value[self.required]))
            self._write(k, value, bool(fine))
            written += 1
        self.prev_t, self.prev_x = t, x
        return written

    def get(self, start, count):
        """Values [count, width] and validity [count] of grid samples start..start+count-1."""
        if start < self.oldest or start + count - 1 > self.newest:
            raise IndexError('requested grid samples are not in the buffer')
        slots = (np.arange(start, start + count)) % self.capacity
        return self.values[slots].copy(), self.valid[slots].copy()
