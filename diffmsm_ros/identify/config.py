"""Identification settings as the identifier takes them (``settings.identify_config``)."""

import dataclasses
import math

from diffmsm_ros.identify import params

FIRST_FIT = 9.0     # s of data fitted by the first online update with memory (its robust start)


@dataclasses.dataclass(frozen=True)
class IdentifyConfig:
    """Identification settings (times in s, angles in rad)."""

    window: float = 10.0        # data per online update, hold-out tail included
    chunk: float = 0.0          # compiled piece of the window (s); 0: the whole window
    period: float = 1.0         # time between online updates
    holdout: float = 1.0        # most recent data, not fitted, used to accept an update
    segment: float = 0.1        # multiple-shooting segment length
    warmup: float = 0.5         # EMG and activation history before the first segment
    sigma_q: float = 1e-4       # angle residual scale (encoder noise)
    sigma_qd: float = 0.05      # velocity residual scale
    velocity_weight: float = 0.0
    profile: bool = True        # profile out segment initial states
    excitation_noise: float = 0.0   # relative EMG envelope error profiled per segment
    excitation_terms: int = 1       # 1: a gain per muscle and segment, 2: gain and trend
    prior_std: float = 1.0      # template prior, in normalised units (0.1 is about 10 %)
    memory: bool = True         # carry what older data determined (an arrival cost)
    corrected_fit: bool = True      # raw EMG offline: the corrected equation-error fit
    length_prior: float = 0.2   # the corrected fit's relative 1-sigma of template lengths
    drift: dict = dataclasses.field(      # random walk per parameter kind, % per sqrt(min)
        default_factory=lambda: dict(params.DEFAULT_DRIFT))
    iterations: int = 3         # LM iterations per online update
    max_iterations: int = 60    # LM iterations for an offline fit
    tolerance: float = 1e-12    # relative cost decrease that ends a fit
    method: str = 'euler'
    parameters: dict = dataclasses.field(
        default_factory=lambda: {k: list(v) for k, v in params.DEFAULT_SELECTION.items()})

    @classmethod
    def from_dict(cls, d):
        """Build from a mapping (e.g. a params file's ``identification`` section)."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known - {'enabled'})
        if unknown:
            raise ValueError(f'identification: unknown settings {unknown}')
        d.pop('enabled', None)
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self):
        for name in ('window', 'period', 'segment', 'sigma_q', 'sigma_qd', 'prior_std',
                     'length_prior'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f'identification.{name} must be a positive number')
        if not 0 <= self.holdout < self.window:
            raise ValueError('identification.holdout must be in [0, window)')
        if not (isinstance(self.chunk, (int, float)) and math.isfinite(self.chunk)
                and (self.chunk == 0 or self.holdout < self.chunk <= self.window)):
            raise ValueError('identification.chunk must be 0 or in (holdout, window]')
        if self.method not in ('euler', 'rk4'):
            raise ValueError('identification.method must be euler or rk4')
        if self.iterations < 1 or self.max_iterations < 1:
            raise ValueError('identification iterations must be at least 1')
        unknown = set(self.drift) - set(params.DEFAULT_DRIFT)
        if unknown:
            raise ValueError(f'identification.drift: unknown kinds {sorted(unknown)}; '
                             f'kinds are {sorted(params.DEFAULT_DRIFT)}')
        if any(not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)
               for v in self.drift.values()):
            raise ValueError('identification.drift values must be finite and not negative')
