"""
Joint velocity from encoder positions, causally.

The velocity is the slope at the newest sample of a quadratic fitted by least squares to
the samples of the last ``window`` seconds.

A quadratic follows a constant acceleration without lag (a line fitted over the same span
lags by half of it), and the fit averages the encoder noise: over 40 ms of 500 Hz samples
the slope's noise is 0.07 of the positions' (rad/s per rad) against 0.71 for a backward
difference.  With fewer than three samples in the window it is the backward difference
(zero for the first sample).  Encoders that send their own velocity are used as they are.

The fit is one native function (``torque_kernel.native``) over the window's samples: its
normal equations in the offsets from the newest sample (scaled by the window's span) and
the slope from the second row of their inverse.  The numpy form it replaced (weights from
a pseudo-inverse, cached for even spacing) cost about 13 us per encoder sample.
"""

from diffmsm_ros.live.torque_kernel import native
import numpy as np

CAPACITY = 64     # samples held before the arrays grow (40 ms at 1 kHz fits)


def slope(t, q, first, end, out):
    """
    Write the velocity at sample ``end - 1`` into ``out`` [nq] (see the module text).

    From samples ``first..end - 1`` of times ``t`` [N] (s) and positions ``q`` [N, nq]
    (rad); at least one sample.
    """
    n, last, nq = end - first, end - 1, q.shape[1]
    if n < 3:
        for j in range(nq):
            out[j] = 0.0 if n < 2 else (q[last, j] - q[first, j]) / (t[last] - t[first])
        return
    span = t[last] - t[first]
    s1 = s2 = s3 = s4 = 0.0
    for i in range(first, end):
        x = (t[i] - t[last]) / span
        s1 += x
        s2 += x * x
        s3 += x * x * x
        s4 += x * x * x * x
    s0 = float(n)
    # the second row of the inverse of [[s0 s1 s2] [s1 s2 s3] [s2 s3 s4]] (symmetric)
    c0 = s2 * s3 - s1 * s4
    c1 = s0 * s4 - s2 * s2
    c2 = s1 * s2 - s0 * s3
    det = s0 * (s2 * s4 - s3 * s3) + s1 * c0 + s2 * (s1 * s3 - s2 * s2)
    for j in range(nq):
        m0 = m1 = m2 = 0.0
        for i in range(first, end):
            x = (t[i] - t[last]) / span
            d = q[i, j] - q[last, j]
            m0 += d
            m1 += d * x
            m2 += d * x * x
        out[j] = (c0 * m0 + c1 * m1 + c2 * m2) / det / span


slope = native(slope)


class CausalVelocity:
    """
    Velocity estimate per sample (see the module docstring).

    The samples in the window sit in two preallocated arrays (times, positions) between
    ``first`` and ``end``: a sample costs an assignment, not a list of arrays to stack
    (that took about a fifth of the torque path's time per encoder sample).
    """

    def __init__(self, window=0.04):
        self.window = float(window)
        self._t = np.empty(CAPACITY)
        self._q = None
        self.first = self.end = 0

    def reset(self):
        self.first = self.end = 0

    def push(self, t, q):
        """Add the sample (t s, q [nq] rad); samples older than the window are dropped."""
        if self._q is None or self._q.shape[1] != len(q):
            self._q = np.empty((len(self._t), len(q)))
            self.first = self.end = 0
        if self.end == len(self._t):
            count = self.end - self.first
            if 2 * count > len(self._t):         # mostly in use: grow
                self._t = np.concatenate([self._t, np.empty(len(self._t))])
                self._q = np.concatenate([self._q, np.empty_like(self._q)])
            self._t[:count] = self._t[self.first:self.end]
            self._q[:count] = self._q[self.first:self.end]
            self.first, self.end = 0, count
        self._t[self.end] = t
        self._q[self.end] = q
        self.end += 1
        times, oldest = self._t, t - self.window - 1e-9
        while times[self.first] < oldest:
            self.first += 1

    def estimate(self):
        """Velocity (rad/s) at the newest sample (None before any)."""
        if self.end == self.first:
            return None
        out = np.empty(self._q.shape[1])
        slope(self._t, self._q, self.first, self.end, out)
        return out

    def compile(self):  # noqa: A003 - the kernels' vocabulary
        """Compile the fit for this many joints (before the first sample needs it)."""
        for n in (1, 3):
            slope(np.arange(n, dtype=float), np.zeros((n, 1)), 0, n, np.empty(1))
