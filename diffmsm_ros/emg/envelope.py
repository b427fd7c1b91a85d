"""
Causal raw-EMG processing: band-pass, full-wave rectification, low-pass, MVC scaling.

The filter keeps its state between chunks (``scipy.signal.sosfilt`` with ``zi``), so a
stream cut into chunks of any size gives the same envelope as one long array.

It also measures how noisy its envelopes are.  A rectified EMG is the amplitude times a
random carrier |n(t)|; normalised by the envelope, the carrier's fluctuation has a flat
spectrum from 0 Hz up to about the EMG bandwidth, of one-sided density S0 (1/Hz, relative
to the mean squared).  Read in a band above the movement (``NOISE_BAND``), S0 gives the
envelope's relative error variance S0 * B (B the low-pass's noise bandwidth) and, for
identification, the error's information cost, which does not depend on the low-pass.
"""

import functools

import numpy as np
from scipy import signal
from scipy.integrate import trapezoid

NOISE_BAND = (10.0, 100.0)   # Hz: band of the normalised rectified EMG read for S0
NOISE_SETTLE = 1.0           # s after a reset before samples count towards S0
NOISE_MIN_SECONDS = 2.0      # s of counted samples before S0 is reported


def noise_bandwidth(sos, sample_rate, points=1 << 15):
    """One-sided noise-equivalent bandwidth (Hz) of a filter of unit passband gain."""
    f, h = signal.sosfreqz(sos, worN=points, fs=sample_rate)
    return float(trapezoid(np.abs(h) ** 2, f))


def _band(sample_rate, low, high):
    high = min(high, 0.45 * sample_rate)
    if not 0 < low < high:
        raise ValueError(f'EMG band-pass {low}-{high} Hz does not fit a sample rate of '
                         f'{sample_rate} Hz')
    return low, high


class EnvelopeFilter:
    """Streams raw EMG (V) into normalised excitations (envelope / MVC) per channel."""

    def __init__(self, sample_rate, mvc, band=(20.0, 450.0), lowpass=6.0, order=2):
        self.sample_rate = float(sample_rate)
        self.mvc = np.asarray(mvc, dtype=float)
        if self.mvc.ndim != 1 or np.any(~np.isfinite(self.mvc)) or np.any(self.mvc <= 0):
            raise ValueError('emg.mvc must hold one positive, finite value per channel')
        low, high = _band(self.sample_rate, *band)
        if not 0 < lowpass < 0.5 * self.sample_rate:
            raise ValueError(f'EMG low-pass {lowpass} Hz does not fit {sample_rate} Hz')
        self.sos_band = signal.butter(order, [low, high], btype='bandpass',
                                      fs=self.sample_rate, output='sos')
        self.sos_low = signal.butter(order, lowpass, btype='lowpass', fs=self.sample_rate,
                                     output='sos')
        noise_high = min(NOISE_BAND[1], 0.45 * self.sample_rate)
        self.sos_noise = signal.butter(2, [NOISE_BAND[0], noise_high], btype='bandpass',
                                       fs=self.sample_rate, output='sos')
        self.noise_band_width = noise_bandwidth(self.sos_noise, self.sample_rate)
        self.envelope_bandwidth = noise_bandwidth(self.sos_low, self.sample_rate)
        self.reset()

    @property
    def channels(self):
        return self.mvc.shape[0]

    @functools.cached_property
    def delay(self):
        """Low-frequency group delay of the envelope low-pass (s): how late envelopes are."""
        b, a = signal.sos2tf(self.sos_low)
        _, gd = signal.group_delay((b, a), w=[0.5], fs=self.sample_rate)
        return float(gd[0]) / self.sample_rate

    def reset(self):
        """Forget the filter state (a new stream begins)."""
        c = self.channels
        self.zi_band = np.zeros((self.sos_band.shape[0], 2, c))
        self.zi_low = np.zeros((self.sos_low.shape[0], 2, c))
        self.zi_noise = np.zeros((self.sos_noise.shape[0], 2, c))
        self.settle = int(round(NOISE_SETTLE * self.sample_rate))
        self.noise_sum = np.zeros(c)
        self.noise_count = np.zeros(c)

    @property
    def noise_density(self):
        """
        Relative one-sided noise density S0 (1/Hz) of the rectified EMG per channel.

        NaN for a channel until ``NOISE_MIN_SECONDS`` of active samples have been read.
        The envelope's relative error variance is ``S0 * envelope_bandwidth``.
        """
        enough = self.noise_count >= NOISE_MIN_SECONDS * self.sample_rate
        mean = self.noise_sum / np.maximum(self.noise_count, 1.0)
        return np.where(enough, mean / self.noise_band_width, np.nan)

    @property
    def envelope_error(self):
        """Relative RMS random error of each channel's envelope (NaN until measured)."""
        return np.sqrt(self.noise_density * self.envelope_bandwidth)

    def process(self, chunk):
        """Envelope [S, C] (fraction of MVC, >= 0) of a raw chunk [S, C] in volts."""
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2 or chunk.shape[1] != self.channels:
            raise ValueError(f'expected a chunk of shape [samples, {self.channels}], '
                             f'got {chunk.shape}')
        band, self.zi_band = signal.sosfilt(self.sos_band, chunk, axis=0, zi=self.zi_band)
        rectified = np.abs(band)
        env, self.zi_low = signal.sosfilt(self.sos_low, rectified, axis=0, zi=self.zi_low)
        self._measure_noise(rectified, env)
        return np.maximum(env, 0.0) / self.mvc[None, :]

    def _measure_noise(self, rectified, env):
        """Accumulate the carrier's fluctuation in ``NOISE_BAND`` relative to the envelope."""
        level = np.maximum(env, 0.0)
        floor = 1e-3 * self.mvc[None, :]          # below 0.1 % MVC there is no carrier to read
        ratio = np.where(level > floor, rectified / np.maximum(level, floor), 1.0)
        hf, self.zi_noise = signal.sosfilt(self.sos_noise, ratio, axis=0, zi=self.zi_noise)
        skip = min(self.settle, hf.shape[0])
        self.settle -= skip
        counted = (level > floor)[skip:]
        self.noise_sum += np.sum(np.where(counted, hf[skip:] ** 2, 0.0), axis=0)
        self.noise_count += np.sum(counted, axis=0)
