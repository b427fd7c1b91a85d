"""The parameter table and the typed settings it builds (``diffmsm_ros.settings``)."""

from diffmsm_ros import settings
from diffmsm_ros.identify.params import DEFAULT_DRIFT
import pytest

MUSCLES = ['m0', 'm1', 'm2']


def test_every_default_passes_its_own_check():
    for name, spec in settings.SPECS.items():
        assert settings.check(name, spec.default) == spec.default, name


@pytest.mark.parametrize('name, value, reason', [
    ('stale_timeout', 50.0, 'outside'), ('stale_timeout', 'x', 'must be a number'),
    ('emg.kind', 'volts', 'must be one of'), ('identification.memory', 1, 'true or false'),
    ('emg.mvc', [1.0, -2.0], 'not negative'), ('no.such', 1, 'unknown parameter')])
def test_check_refuses_with_the_reason(name, value, reason):
    with pytest.raises(settings.SettingsError, match=reason):
        settings.check(name, value)


def test_emg_config_checks_channels_and_mvc_against_the_model():
    values = settings.defaults()
    config = settings.emg_config(values, MUSCLES)
    assert config.groups(MUSCLES) == ([[0], [1], [2]], 3)
    assert config.mvc_values(3) == [1.0] * 3
    two = dict(values, **{'emg.channels': ['m0', 'm1', 'm1', 'm2', ''],
                          'emg.mvc': [1e-3, 2e-3, 0.0, 4e-3, 5e-3]})
    config = settings.emg_config(two, MUSCLES)
    assert config.groups(MUSCLES) == ([[0], [1, 2], [3]], 5)
    assert config.mvc_values(5) == [1e-3, 2e-3, 1.0, 4e-3, 5e-3]
    for bad, reason in ((['m0', 'm1', 'mx'], 'does not have'), (['m0', 'm1'], 'no channel')):
        with pytest.raises(settings.SettingsError, match=reason):
            settings.emg_config(dict(values, **{'emg.channels': bad}), MUSCLES)
    with pytest.raises(settings.SettingsError, match='2 values for 3 channels'):
        settings.emg_config(dict(values, **{'emg.mvc': [1.0, 1.0]}), MUSCLES)


def test_identify_config_fills_the_kind_dependent_defaults():
    values = settings.defaults()
    envelope = settings.identify_config(values)
    raw = settings.identify_config(dict(values, **{'emg.kind': 'raw'}))
    assert (envelope.segment, envelope.excitation_noise, envelope.excitation_terms) == \
        (0.1, 0.0, 1)
    assert (raw.segment, raw.excitation_noise, raw.excitation_terms) == (0.05, 0.2, 2)
    assert envelope.drift == DEFAULT_DRIFT
    set_ = settings.identify_config(dict(values, **{'identification.segment': 0.2,
                                                    'identification.drift.strength': 5.0}))
    assert set_.segment == 0.2 and set_.drift['strength'] == 5.0
    with pytest.raises(settings.SettingsError, match='chunk'):
        settings.identify_config(dict(values, **{'identification.chunk': 0.5}))


def test_parameter_files_nested_dotted_and_wildcard(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text('/**:\n  ros__parameters:\n    stale_timeout: 0.3\n'
                    'diffmsm:\n  ros__parameters:\n    use_sim_time: true\n'
                    '    emg:\n      kind: raw\n    identification.window: 20.0\n')
    values = settings.load_file(str(path))
    assert values['stale_timeout'] == 0.3 and values['emg.kind'] == 'raw'
    assert values['identification.window'] == 20.0
    assert settings.timeline_config(values).stale_timeout == 0.3
    path.write_text('diffmsm:\n  ros__parameters:\n    stale_timeout: 99.0\n')
    with pytest.raises(settings.SettingsError, match='p.yaml: stale_timeout'):
        settings.load_file(str(path))
