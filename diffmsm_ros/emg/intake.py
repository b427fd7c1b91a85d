"""
EMG intake: chunks of EMG samples to per-muscle excitations with sample times.

Raw EMG is band-passed, rectified, low-passed and MVC-normalised causally; envelope EMG is
checked and clipped to [0, 1].  Channels map to muscles by ``EmgConfig.channels``.  Used by the
node's torque path and by offline identification, so both process EMG the same way.
"""

import collections

from diffmsm_ros.bad_input import BadInput
from diffmsm_ros.emg.config import EmgConfig
from diffmsm_ros.emg.envelope import EnvelopeFilter
import numpy as np

ANCHOR_CHUNKS = 50                   # chunks per refinement of the EMG clock
ANCHOR_PERCENTILE = 10               # offsets are one-sided: the clock follows their low end
MAX_LAG = 1.0                        # s of processing lag before the EMG clock restarts


class EmgError(BadInput):
    """EMG that cannot be used (see ``BadInput`` for the codes)."""


class EmgIntake:
    """EMG samples [S, C] -> excitations [S, n_muscles] in [0, 1] and times (s)."""

    def __init__(self, config: EmgConfig, muscle_names):
        groups, self.channels = config.groups(muscle_names)
        # each muscle's excitation is the mean of its channels' envelopes
        self.combine = np.zeros((self.channels, len(muscle_names)))
        for m, group in enumerate(groups):
            self.combine[group, m] = 1.0 / len(group)
        # one channel per muscle, in the muscles' order (the usual case): no product needed
        self.direct = self.channels == len(muscle_names) and \
            np.array_equal(self.combine, np.eye(self.channels))
        self.rate = float(config.sample_rate)
        self.kind = config.kind
        self.max_value = float(config.max_value)
        self.filter = None
        if self.kind == 'raw':
            self.filter = EnvelopeFilter(
                self.rate, config.mvc_values(self.channels), config.band, config.lowpass)
        self.last_time = None              # s, the newest sample's time on the clock
        self.clipped = 0
        self.anchors = 0                   # times the sample clock was (re)anchored
        self.recent = []                   # receipt offsets since the last refinement
        self.offsets = collections.deque(maxlen=500)   # receipt - sample clock (s)

    @property
    def lag(self):
        """How late the excitations are because of the envelope filter (s)."""
        return self.filter.delay if self.filter is not None else 0.0

    @property
    def noise_density(self):
        """
        Envelope noise density S0 per muscle (1/Hz) measured on raw EMG, else None.

        None too until every muscle's channel has been read long enough.
        """
        if self.filter is None:
            return None
        # K electrodes of independent carriers: the mean's relative error variance is the
        # channels' mean over K (as for envelopes of similar size)
        density = self.filter.noise_density @ self.combine ** 2
        return density if np.all(np.isfinite(density)) else None

    def reset(self):
        self.last_time = None
        self.recent = []
        if self.filter is not None:
            self.filter.reset()

    def times(self, last, count, stamped=False, rate=None):
        """
        Stamp each sample of a chunk (s) whose newest sample arrived at ``last``.

        Chunks of a stream at ``rate`` (default ``emg.sample_rate``) are laid end to end on
        a sample clock.  The clock is anchored on the first chunk's receipt time ``last``
        and then follows the sample count, so receipt jitter and processing lag do not
        move the samples; every ``ANCHOR_CHUNKS`` chunks it moves by a low percentile of
        the receipt offsets (a chunk can reach the node late, never before it was
        sampled); it is re-anchored when receipt runs ahead of it by more than a few
        chunks (a gap, or a device clock drifting from the node's) or behind it by more
        than ``MAX_LAG`` (a restart).  ``stamped``: ``last`` is the sample's own time.
        """
        dt = 1.0 / (rate or self.rate)
        if not stamped and self.last_time is not None:
            predicted = self.last_time + count * dt
            offset = last - predicted
            self.offsets.append(offset)
            # receipt behind the clock is processing lag (up to MAX_LAG); ahead of it by
            # more than a few chunks, or far behind, means a gap or a restart
            if -MAX_LAG <= offset <= max(0.05, 3.0 * count * dt):
                self.recent.append(offset)
                if len(self.recent) >= ANCHOR_CHUNKS:
                    # refine the anchor by the low end of the receipt offsets
                    predicted += low_percentile(self.recent, ANCHOR_PERCENTILE)
                    self.recent = []
                last = predicted
            else:
                self.anchors += 1
                self.recent = []
        elif not stamped:
            self.anchors += 1
            self.recent = []
        self.last_time = last
        return last - dt * np.arange(count - 1, -1, -1)

    def check(self, samples):
        """Return samples [S, C] as floats, or raise ``EmgError`` saying what is wrong."""
        samples = np.asarray(samples, dtype=float)
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise EmgError(f'expected {self.channels} EMG channels, got {samples.shape}',
                           'channel_count')
        # two reductions for the usual, good chunk (NaN fails both comparisons); the
        # diagnosis below runs only for a chunk that fails them
        low, high = samples.min(), samples.max()
        if self.filter is not None:
            if -1e3 <= low and high <= 1e3:
                return samples
        elif -0.05 <= low and high <= self.max_value:
            return samples
        if not np.all(np.isfinite(samples)):
            raise EmgError('EMG holds NaN or infinite values', 'non_finite')
        if self.filter is not None:
            raise EmgError('raw EMG above 1 kV: not volts', 'out_of_range')
        raise EmgError(f'EMG envelope outside [0, {self.max_value}]', 'out_of_range')

    def excitations(self, samples, checked=False):
        """
        Excitations [S, n_muscles] of samples [S, C] (V for raw, fraction of MVC else).

        ``checked``: the samples passed ``check`` already (chunks checked one by one as
        they came, filtered together).
        """
        if not checked:
            samples = self.check(samples)
        env = self.filter.process(samples) if self.filter is not None else samples
        if env.max() > 1.0:
            self.clipped += int(np.count_nonzero(env > 1.0))
        return self.muscles(env)

    def muscles(self, env):
        """Excitations [S, n_muscles] in [0, 1] of channel envelopes [S, C]."""
        # np.minimum / np.maximum: np.clip costs several times more on arrays this small
        return np.minimum(np.maximum(env if self.direct else env @ self.combine, 0.0), 1.0)


def low_percentile(values, percent):
    """
    ``np.percentile(values, percent)`` (linear) of a short list, in plain Python.

    It runs on the torque path once per ``ANCHOR_CHUNKS`` chunks: np.percentile took about
    0.2 ms there (CPU caches cold), sorting 50 floats a few us.
    """
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = percent / 100.0 * (len(ordered) - 1)
    i = min(int(pos), len(ordered) - 2)
    return float(ordered[i] + (ordered[i + 1] - ordered[i]) * (pos - i))
