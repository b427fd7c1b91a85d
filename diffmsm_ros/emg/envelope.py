"""
Causal raw-EMG processing: band-pass, full-wave rectification, low-pass, MVC scaling.

The filter keeps its state between chunks (``scipy.signal.sosfilt`` with ``zi``), so a
stream cut into chunks of any size gives the same envelope as one long array.
"""

import numpy as np
from scipy import signal


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
        self.reset()

    @property
    def channels(self):
        return self.mvc.shape[0]

    @property
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

    def process(self, chunk):
        """Envelope [S, C] (fraction of MVC, >= 0) of a raw chunk [S, C] in volts."""
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2 or chunk.shape[1] != self.channels:
            raise ValueError(f'expected a chunk of shape [samples, {self.channels}], '
                             f'got {chunk.shape}')
        band, self.zi_band = signal.sosfilt(self.sos_band, chunk, axis=0, zi=self.zi_band)
        env, self.zi_low = signal.sosfilt(self.sos_low, np.abs(band), axis=0, zi=self.zi_low)
        return np.maximum(env, 0.0) / self.mvc[None, :]
