"""
The node's parameters: names, types, defaults, ranges and which ones are read-only.

One table serves the ROS node (declared with descriptors), ``diffmsm identify
--params-file`` and ``diffmsm run``.  Parameter files use the usual ROS 2 layout
(``diffmsm: ros__parameters: {...}``, nested keys or dotted names, ``/**`` accepted).
"""

import dataclasses
import math

from diffmsm_ros.emg.config import EmgConfig, EmgConfigError
from diffmsm_ros.identify.config import FIRST_FIT, IdentifyConfig
from diffmsm_ros.identify.params import DEFAULT_DRIFT, DEFAULT_SELECTION
from diffmsm_ros.live.timeline import TimelineConfig
import yaml

NODE_NAME = 'diffmsm'


@dataclasses.dataclass(frozen=True)
class Spec:
    """One parameter: default, meaning, allowed range or choices, read-only flag."""

    default: object
    description: str
    low: float = None
    high: float = None
    choices: tuple = ()
    read_only: bool = False


SPECS = {
    'model.template': Spec('elbow', 'subject-model template: bundled name, YAML path or '
                           'mjcf:PATH', read_only=True),
    'model.output_path': Spec('subject_model.yaml', 'where ~/save_model (and every accepted '
                              'update, if model.save_on_update) writes the model'),
    'model.save_on_update': Spec(True, 'save the model atomically on every accepted update'),
    'joints': Spec([''], "model joints to read from joint_states (empty: the template's)",
                   read_only=True),
    'stale_timeout': Spec(0.1, 'seconds without EMG or encoders before torque stops',
                          low=0.001, high=10.0),
    'torque.deadline': Spec(0.1, 'seconds after an encoder sample was published beyond which '
                            'its torque is dropped (and counted) instead of sent late',
                            low=0.001, high=10.0),
    'torque.velocity_window': Spec(0.04, 'seconds of encoder positions whose quadratic fit '
                                   'gives the velocity when joint_states carry none',
                                   low=0.0, high=1.0, read_only=True),
    'torque.realtime_priority': Spec(20, 'SCHED_FIFO priority of the torque path thread '
                                     'where the OS allows it (0: normal scheduling)',
                                     low=0, high=98, read_only=True),
    'diagnostics_period': Spec(1.0, 'seconds between /diagnostics messages', low=0.05,
                               high=60.0),
    'rates.encoders': Spec(0.0, 'expected encoder rate in Hz (0: do not check)', low=0.0,
                           high=100000.0),
    'rates.emg': Spec(0.0, 'expected EMG sample rate in Hz (0: emg.sample_rate)', low=0.0,
                      high=100000.0),
    'emg.msg_type': Spec('float64_multi_array', 'EMG message type',
                         choices=('float64_multi_array', 'joint_state'), read_only=True),
    'emg.kind': Spec('envelope', 'envelope: excitations in [0, 1]; raw: volts',
                     choices=('envelope', 'raw'), read_only=True),
    'emg.sample_rate': Spec(1000.0, 'EMG samples per second per channel (Hz)', low=1.0,
                            high=20000.0, read_only=True),
    'emg.channels': Spec([''], 'muscle of each EMG channel, in order ("" = unused); '
                         "empty: the template's muscles", read_only=True),
    'emg.mvc': Spec([0.0], 'raw EMG envelope at maximum voluntary contraction (V) per '
                    'channel; empty or 0: 1.0', read_only=True),
    'emg.band_low': Spec(20.0, 'raw EMG band-pass low edge (Hz)', low=1.0, high=200.0,
                         read_only=True),
    'emg.band_high': Spec(450.0, 'raw EMG band-pass high edge (Hz)', low=50.0,
                          high=5000.0, read_only=True),
    'emg.lowpass': Spec(6.0, 'raw EMG envelope low-pass (Hz)', low=0.5, high=50.0,
                        read_only=True),
    'emg.max_value': Spec(2.0, 'largest plausible envelope value (x MVC) before a sample '
                          'is refused', low=1.0, high=100.0),
    'identification.enabled': Spec(True, 'update parameters online'),
    'identification.window': Spec(10.0, 'seconds of data per update', low=1.0, high=120.0,
                                  read_only=True),
    'identification.chunk': Spec(0.0, 'seconds per compiled piece of the window (0: the '
                                 'whole window); updates start after one chunk (with memory '
                                 f'the first waits for {FIRST_FIT:g} s of data, or the '
                                 'window) and fit more chunks as data accumulate',
                                 low=0.0, high=120.0, read_only=True),
    'identification.period': Spec(1.0, 'seconds between updates', low=0.05, high=600.0),
    'identification.holdout': Spec(1.0, 'most recent seconds kept out of the fit to accept '
                                   'or reject an update', low=0.1, high=30.0, read_only=True),
    'identification.segment': Spec(0.0, 'multiple-shooting segment length (s); 0: 0.1 for '
                                   'envelope EMG, 0.05 for raw EMG', low=0.0, high=2.0,
                                   read_only=True),
    'identification.excitation_noise': Spec(
        -1.0, 'relative 1-sigma of EMG-derived excitations, profiled per segment and muscle; '
        '-1: 0 for envelope EMG, 0.2 for raw EMG', low=-1.0, high=1.0, read_only=True),
    'identification.warmup': Spec(0.5, 'activation warm-up before the first segment (s)',
                                  low=0.0, high=5.0, read_only=True),
    'identification.iterations': Spec(3, 'Levenberg-Marquardt iterations per update',
                                      low=1, high=100),
    'identification.sigma_q': Spec(1e-4, 'encoder noise (rad), the angle residual scale',
                                   low=1e-7, high=0.1, read_only=True),
    'identification.prior_std': Spec(1.0, 'template prior spread, normalised units',
                                     low=1e-3, high=1e3, read_only=True),
    'identification.corrected_fit': Spec(
        True, 'raw EMG: fit the muscles by the equation error corrected for the envelope '
        'error, on the whole session (diffmsm identify) and, live, in session fits over '
        'the session so far (false: the shooting fit only)',
        read_only=True),
    'identification.length_prior': Spec(
        0.2, "raw EMG, the corrected fit: relative 1-sigma of the template's fibre and "
        'tendon slack lengths (a prior about the template)', low=0.01, high=10.0,
        read_only=True),
    'identification.memory': Spec(True, 'carry what earlier data determined into every '
                                  'update (an arrival cost) instead of the template prior; '
                                  'raw EMG: track the strengths after a session fit',
                                  read_only=True),
    **{f'identification.drift.{kind}': Spec(DEFAULT_DRIFT[kind], f'random walk of {what}, % '
                                            'per sqrt(min)', low=0.0, high=100.0,
                                            read_only=True)
       for kind, what in (('strength', 'muscle strengths (fatigue)'),
                          ('lengths', 'optimal fibre and tendon slack lengths'),
                          ('activation', 'activation time constants, EMG gains and delays'),
                          ('bones', 'segment inertial parameters and joint damping'))},
    **{f'identification.parameters.{section}': Spec(list(DEFAULT_SELECTION[section]),
                                                    f'{section[:-1]} parameters to identify',
                                                    read_only=True)
       for section in DEFAULT_SELECTION},
}


class SettingsError(ValueError):
    """A parameter value or file that cannot be used."""


def check(name, value):
    """Validate one value against its spec; returns the value (converted) or raises."""
    spec = SPECS.get(name)
    if spec is None:
        raise SettingsError(f'unknown parameter {name!r}')
    default = spec.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f'{name} must be true or false')
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f'{name} must be a number')
        if not math.isfinite(value):
            raise SettingsError(f'{name} must be finite')
        if spec.low is not None and value < spec.low or spec.high is not None and \
                value > spec.high:
            raise SettingsError(f'{name} = {value} is outside [{spec.low}, {spec.high}]')
        return int(value) if isinstance(default, int) else float(value)
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f'{name} must be a list')
        kind = type(default[0])
        if kind is float:
            try:
                out = [float(v) for v in value]
            except (TypeError, ValueError):
                raise SettingsError(f'{name} must be a list of numbers') from None
            if any(not math.isfinite(v) or v < 0 for v in out):
                raise SettingsError(f'{name} values must be finite and not negative')
            return out
        if any(not isinstance(v, str) for v in value):
            raise SettingsError(f'{name} must be a list of strings')
        return list(value)
    if not isinstance(value, str):
        raise SettingsError(f'{name} must be a string')
    if spec.choices and value not in spec.choices:
        raise SettingsError(f'{name} must be one of {list(spec.choices)}, got {value!r}')
    return value


def defaults():
    return {name: spec.default for name, spec in SPECS.items()}


def _flatten(tree, prefix=''):
    out = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(_flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def load_file(path, node_name=NODE_NAME):
    """Parameters for ``node_name`` from a ROS 2 parameters file, validated (flat dict)."""
    try:
        with open(path, encoding='utf-8') as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as err:
        raise SettingsError(f'{path}: cannot read ({err.strerror})') from None
    except yaml.YAMLError as err:
        raise SettingsError(f'{path}: not valid YAML ({err})') from None
    if not isinstance(doc, dict):
        raise SettingsError(f'{path}: expected a mapping of node names')
    values = {}
    for key in ('/**', node_name, '/' + node_name):
        section = doc.get(key)
        if isinstance(section, dict) and isinstance(section.get('ros__parameters'), dict):
            values.update(_flatten(section['ros__parameters']))
    values.pop('use_sim_time', None)
    out = defaults()
    for name, value in values.items():
        try:
            out[name] = check(name, value)
        except SettingsError as err:
            raise SettingsError(f'{path}: {err}') from None
    return out


def identify_config(values):
    """Build an IdentifyConfig from flat parameter values."""
    names = ('window', 'chunk', 'period', 'holdout', 'warmup', 'iterations', 'sigma_q',
             'prior_std', 'length_prior')
    kwargs = {n: values[f'identification.{n}'] for n in names}
    raw = values['emg.kind'] == 'raw'
    segment = values['identification.segment']
    kwargs['segment'] = segment if segment > 0 else (0.05 if raw else 0.1)
    noise = values['identification.excitation_noise']
    kwargs['excitation_noise'] = noise if noise >= 0 else (0.2 if raw else 0.0)
    kwargs['excitation_terms'] = 2 if raw else 1
    kwargs['memory'] = values['identification.memory']
    kwargs['corrected_fit'] = values['identification.corrected_fit']
    kwargs['drift'] = {kind: values[f'identification.drift.{kind}']
                       for kind in DEFAULT_DRIFT}
    kwargs['parameters'] = {
        section: [f for f in values[f'identification.parameters.{section}'] if f]
        for section in DEFAULT_SELECTION}
    try:
        return IdentifyConfig.from_dict(kwargs)
    except (TypeError, ValueError) as err:
        raise SettingsError(str(err)) from None


def timeline_config(values):
    """Build the input time line's TimelineConfig from flat parameter values."""
    return TimelineConfig(stale_timeout=values['stale_timeout'],
                          deadline=values['torque.deadline'],
                          velocity_window=values['torque.velocity_window'],
                          encoder_rate=values['rates.encoders'], emg_rate=values['rates.emg'])


def emg_config(values, muscle_names=None):
    """
    Build the EMG intake's EmgConfig from flat parameter values.

    With ``muscle_names`` its channels and MVC values are checked against the model.
    """
    config = EmgConfig(kind=values['emg.kind'], sample_rate=values['emg.sample_rate'],
                       channels=tuple(values['emg.channels']), mvc=tuple(values['emg.mvc']),
                       band=(values['emg.band_low'], values['emg.band_high']),
                       lowpass=values['emg.lowpass'], max_value=values['emg.max_value'])
    if muscle_names is not None:
        try:
            _, count = config.groups(muscle_names)
            config.mvc_values(count)
        except EmgConfigError as err:
            raise SettingsError(str(err)) from None
    return config
