"""EMG settings as the EMG code takes them (``settings.emg_config`` builds one)."""

import dataclasses


class EmgConfigError(ValueError):
    """EMG settings that do not fit the model (channels or MVC values)."""


@dataclasses.dataclass(frozen=True)
class EmgConfig:
    """
    How EMG arrives and is turned into excitations.

    ``channels`` names the muscle of each channel in order ('' = unused; empty: one channel
    per model muscle, in its order); ``mvc`` is the raw envelope at maximum voluntary
    contraction per channel (V; empty or 0 values: 1.0).
    """

    kind: str = 'envelope'              # 'envelope' (excitations in [0, 1]) or 'raw' (V)
    sample_rate: float = 1000.0         # Hz per channel
    channels: tuple = ()
    mvc: tuple = ()                     # V
    band: tuple = (20.0, 450.0)         # Hz, raw EMG band-pass edges
    lowpass: float = 6.0                # Hz, raw EMG envelope low-pass
    max_value: float = 2.0              # x MVC, largest plausible envelope value

    def channel_names(self, muscle_names):
        """Muscle of each EMG channel, in order ('' = unused)."""
        channels = list(self.channels)
        return channels if channels and channels != [''] else list(muscle_names)

    def groups(self, muscle_names):
        """
        Channels of each muscle ([[channel index, ...] per muscle]) and the channel count.

        A muscle may have several channels (electrodes): its excitation is their mean.
        """
        channels = self.channel_names(muscle_names)
        unknown = [c for c in channels if c and c not in muscle_names]
        if unknown:
            raise EmgConfigError(f'emg.channels names muscles the model does not have: '
                                 f'{unknown}')
        missing = [m for m in muscle_names if m not in channels]
        if missing:
            raise EmgConfigError(f'emg.channels gives no channel to muscles {missing}')
        return [[k for k, c in enumerate(channels) if c == m] for m in muscle_names], \
            len(channels)

    def mvc_values(self, count):
        """MVC per channel (1.0 where unset)."""
        mvc = list(self.mvc)
        if mvc == [0.0] or not mvc:
            return [1.0] * count
        if len(mvc) != count:
            raise EmgConfigError(f'emg.mvc has {len(mvc)} values for {count} channels')
        return [v if v > 0 else 1.0 for v in mvc]
