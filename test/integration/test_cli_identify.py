"""The ``diffmsm`` command line run as a user runs it: simulate, identify, errors."""

import csv
import subprocess
import sys

from diffmsm_ros import settings
from diffmsm_ros.files import modelfile
from diffmsm_ros.session import record
import numpy as np
import pytest
from sessions import muscle_errors, MUSCLE_FIELDS

CLI_SESSION = 20.0        # s
REPORT_FILES = ('angle.png', 'torque.png', 'parameters.png', 'trajectory.csv', 'summary.md')


def diffmsm(*args, timeout=600):
    cmd = [sys.executable, '-m', 'diffmsm_ros.cli.main', *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_simulate_then_identify(tmp_path, elbow):
    session = tmp_path / 'session'
    done = diffmsm('simulate', '--out', session, '--duration', CLI_SESSION, '--seed', 2)
    assert done.returncode == 0, done.stderr
    out, report = tmp_path / 'M.yaml', tmp_path / 'report'
    done = diffmsm('identify', session / 'bag', '--template', 'elbow', '--out', out,
                   '--report', report, '--truth', session / 'truth.yaml', '--quiet',
                   '--params-file', session / 'params.yaml')
    assert done.returncode == 0, done.stderr
    model, truth = modelfile.load(out), modelfile.load(session / 'truth.yaml')
    modelfile.check_compatible(model, elbow)
    err = muscle_errors(model.model, truth.model)
    assert err.max() <= 2.0
    assert 'identified' in done.stdout and 'error %' in done.stdout
    for name in REPORT_FILES:
        assert (report / name).is_file(), name
        assert (report / name).stat().st_size > 0
        if name.endswith('.png'):
            assert (report / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    summary = (report / 'summary.md').read_text()
    assert 'error_percent' in summary
    assert all(f'{m}.{f}' in summary for m in elbow.model.muscle_names for f in MUSCLE_FIELDS)
    # the trajectory: updates in time order, the online model moving from the template to
    # the truth (the last accepted row is closer than the template, every 1-sigma positive)
    with open(report / 'trajectory.csv', encoding='utf-8') as fh:
        rows = list(csv.DictReader(fh))
    times = np.array([float(r['time_s']) for r in rows])
    assert len(rows) >= 4 and np.all(np.diff(times) > 0) and times[-1] <= CLI_SESSION
    last = [r for r in rows if r['accepted'] == '1'][-1]
    names = elbow.model.muscle_names
    tracked = np.array([[float(last[f'{m}.{f}']) for m in names] for f in MUSCLE_FIELDS])
    true = np.array([np.asarray(getattr(truth.model.muscles, f)) for f in MUSCLE_FIELDS])
    tracked = 100 * np.abs(tracked - true) / np.abs(true)
    template = muscle_errors(elbow.model, truth.model)
    assert tracked.mean() < 0.5 * template.mean(), (tracked.mean(), template.mean())
    assert all(float(last[f'{m}.{f} std']) > 0 for m in names for f in MUSCLE_FIELDS)


@pytest.mark.slow
def test_cli_simulate_raw_writes_the_settings_that_read_it(tmp_path, elbow):
    session = tmp_path / 'raw'
    done = diffmsm('simulate', '--out', session, '--duration', 3, '--emg', 'raw')
    assert done.returncode == 0, done.stderr
    assert str(session / 'params.yaml') in done.stdout
    values = settings.load_file(str(session / 'params.yaml'))
    truth = modelfile.load(session / 'truth.yaml')
    emg = truth.extra['session']['emg']
    assert values['emg.kind'] == 'raw' and values['emg.sample_rate'] == record.RAW_RATE
    assert values['emg.mvc'] == emg['mvc'] and values['emg.channels'] == emg['channels']
    # and identify refuses the bag without them instead of fitting volts as an envelope
    done = diffmsm('identify', session / 'bag', '--template', 'elbow', '--out',
                   tmp_path / 'M.yaml', '--quiet')
    assert done.returncode != 0 and 'looks like raw EMG' in done.stderr
    assert not (tmp_path / 'M.yaml').exists()


@pytest.mark.slow
def test_cli_identify_missing_bag(tmp_path):
    missing = tmp_path / 'no_such_bag'
    done = diffmsm('identify', missing, '--out', tmp_path / 'M.yaml', '--quiet', timeout=120)
    assert done.returncode == 2
    assert f'diffmsm identify: error: no bag at {missing}' in done.stderr
    assert 'Traceback' not in done.stderr
    assert not (tmp_path / 'M.yaml').exists()


@pytest.mark.slow
def test_cli_identify_raw_fits_by_the_corrected_equation_error(tmp_path, elbow):
    # raw EMG, by default: the muscles by the corrected equation-error fit over the whole
    # session, the bones kept at the template's; the model says which fit made it
    session = tmp_path / 'raw'
    done = diffmsm('simulate', '--out', session, '--duration', CLI_SESSION, '--emg', 'raw',
                   '--seed', 2)
    assert done.returncode == 0, done.stderr
    params = session / 'params.yaml'
    assert settings.load_file(str(params))['identification.corrected_fit'] is True
    out = tmp_path / 'M.yaml'
    done = diffmsm('identify', session / 'bag', '--template', 'elbow', '--out', out,
                   '--params-file', params, '--quiet')
    assert done.returncode == 0, done.stderr
    model = modelfile.load(out)
    modelfile.check_compatible(model, elbow)
    assert model.identification['final_fit'].startswith('corrected')
    bones, template = model.model.skeleton, elbow.model.skeleton
    assert np.allclose(np.asarray(bones.mass), np.asarray(template.mass))
    forces = np.asarray(model.model.muscles.max_isometric_force)
    assert np.all(np.isfinite(forces)) and not np.allclose(
        forces, np.asarray(elbow.model.muscles.max_isometric_force))
