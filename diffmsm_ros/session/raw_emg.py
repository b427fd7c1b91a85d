"""
Synthetic raw surface EMG whose rectified envelope is a given excitation.

Each channel is band-limited (20-450 Hz) Gaussian noise of unit standard deviation,
amplitude-modulated by ``amplitude * u(t)``.  Its MVC value, as for a real subject, is what
the node's own envelope pipeline reads at full excitation (``calibrate_mvc``).
"""

from diffmsm_ros.emg.envelope import EnvelopeFilter
import numpy as np
from scipy import signal


def calibrate_mvc(amplitude, sample_rate, seconds=20.0, seed=12345, **filter_options):
    """Mean envelope (V) the node's filter gives at full excitation (an MVC trial)."""
    t = np.arange(int(seconds * 500)) / 500.0
    raw, _ = synthesize(t, np.ones((len(t), 1)), sample_rate, np.random.default_rng(seed),
                        amplitude)
    env = EnvelopeFilter(sample_rate, [1.0], **filter_options).process(raw)
    return float(np.mean(env[int(2 * sample_rate):, 0]))


def synthesize(t_model, u, sample_rate, rng, amplitude=1e-3, band=(20.0, 450.0)):
    """
    Raw EMG [S, C] (V) at ``sample_rate`` and its sample times [S] (s).

    ``u`` [T, C] is sampled at ``t_model`` and held between samples.
    """
    duration = t_model[-1] - t_model[0] + (t_model[1] - t_model[0])
    n = int(round(duration * sample_rate))
    t = t_model[0] + (np.arange(n) + 1) / sample_rate
    idx = np.clip(np.searchsorted(t_model, t, side='right') - 1, 0, len(t_model) - 1)
    envelope = u[idx]
    sos = signal.butter(4, [band[0], min(band[1], 0.45 * sample_rate)], btype='bandpass',
                        fs=sample_rate, output='sos')
    warm = int(sample_rate)  # discard the filter's start-up transient
    noise = signal.sosfilt(sos, rng.standard_normal((n + warm, u.shape[1])), axis=0)[warm:]
    noise /= noise.std(axis=0, keepdims=True)
    return amplitude * envelope * noise, t
