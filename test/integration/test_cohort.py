"""
``diffmsm identify-batch`` on a local Ray instance of two workers, as a user runs it.

Four short simulated sessions of two subjects and one corrupt bag go through the command
while the test kills the worker process of one running session; the models must equal
those of the same pipeline run session after session in one process before (with the
workers' XLA setting), the corrupt bag must be reported and the killed session retried.  A
second run must find every session complete and start no Ray at all.

The claim is the equality, whatever the identification finds: the sessions identify the
six strengths only (a 4 s session leaves the full parameter set poorly determined, and its
robust starts took 3-50 s a session), and the reference runs first, so that the workers
find its compiled programs in the shared JAX caches, as a batch after a first session would.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from diffmsm_ros.cli import cohort
from diffmsm_ros.files import modelfile
from diffmsm_ros.session import record
import jax
import numpy as np
import pytest
from ros2_tools import wait_until
import yaml

pytestmark = pytest.mark.slow
pytest.importorskip('ray', reason='identify-batch needs the [cluster] extra (Ray)')

DURATION = 4.0            # s per session: an online update and a final fit
STRENGTHS_ONLY = {'muscles': ['max_isometric_force'], 'segments': [], 'joints': []}
SESSIONS = {'P01_w1': 0, 'P01_w2': 1, 'P02_w1': 2, 'P02_w2': 3}   # name: simulator seed
CORRUPT = 'P03_w1'
TIMEOUT = 600.0
REFERENCE = """
import os, sys
from diffmsm_ros.cli import cohort_table
from diffmsm_ros.cli.commands import identify_session
params, out = sys.argv[1], sys.argv[2]
for bag in sys.argv[3:]:
    identify_session(bag, os.path.join(out, cohort_table.session_name(bag) + '.yaml'),
                     None, params)
"""


def diffmsm(*args, env=None):
    return subprocess.Popen([sys.executable, '-m', 'diffmsm_ros.cli.main', *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def finish(proc, timeout=TIMEOUT):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.fixture(scope='module')
def sessions(tmp_path_factory, elbow):
    """Simulate the four sessions; a fifth bag is the first one's mcap cut short."""
    root = tmp_path_factory.mktemp('cohort_sessions')
    bags = {}
    for name, seed in SESSIONS.items():
        bags[name], _ = record.record(elbow, str(root / name), DURATION, seed=seed,
                                      perturb=0.1)
    good = bags['P01_w1']
    bad = root / CORRUPT / 'bag'
    bad.mkdir(parents=True)
    shutil.copy(os.path.join(good, 'metadata.yaml'), bad)
    mcap = [f for f in os.listdir(good) if f.endswith('.mcap')][0]
    data = open(os.path.join(good, mcap), 'rb').read()
    (bad / mcap).write_bytes(data[:len(data) // 3])
    bags[CORRUPT] = str(bad)
    params = root / 'params.yaml'
    with open(root / 'P01_w1' / 'params.yaml') as fh:
        values = yaml.safe_load(fh)
    values['/**']['ros__parameters']['identification'] = {'parameters': STRENGTHS_ONLY}
    params.write_text(yaml.safe_dump(values))
    return {'bags': bags, 'params': str(params)}


def kill_first_worker(folders, timeout):
    """Wait until a session's task has started, SIGKILL its worker; return (session, pid)."""
    def started():
        for name, folder in folders.items():
            try:
                with open(os.path.join(folder, cohort.ATTEMPTS)) as fh:
                    pids = fh.read().split()
            except FileNotFoundError:
                continue
            if pids:
                return name, int(pids[0])
        return None
    found = wait_until(started, timeout)
    assert found, f'no session started within {timeout} s'
    os.kill(found[1], signal.SIGKILL)
    return found


def read_table(path):
    with open(path, newline='') as fh:
        return {row['session']: row for row in csv.DictReader(fh)}


def max_relative_difference(a, b):
    """Largest |a - b| / |b| over every number of two subject models (0 where both are 0)."""
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        assert x.shape == y.shape
        scale = np.where(y == 0, 1.0, np.abs(y))
        worst = max(worst, float(np.max(np.abs(x - y) / scale, initial=0.0)))
    return worst


def test_identify_batch_on_two_workers(sessions, tmp_path):
    bags, params = sessions['bags'], sessions['params']
    out, ref = tmp_path / 'cohort', tmp_path / 'reference'
    ref.mkdir()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED='0')
    # the reference: the same pipeline, session after session in one process, with the
    # XLA setting of the workers (one thread; the results differ in the 11th digit otherwise)
    reference = subprocess.run(
        [sys.executable, '-c', REFERENCE, params, str(ref)]
        + [bags[name] for name in SESSIONS], env=dict(env, **cohort.worker_env()),
        capture_output=True, text=True, timeout=TIMEOUT)
    assert reference.returncode == 0, reference.stderr[-3000:]
    started = time.monotonic()
    batch = diffmsm('identify-batch', *bags.values(), '--out', out, '--workers', 2,
                    '--params-file', params, '--quiet', env=env)
    try:
        killed, pid = kill_first_worker({n: out / n for n in SESSIONS}, TIMEOUT)
    except BaseException:
        batch.kill()
        batch.communicate()
        raise
    code, stdout, stderr = finish(batch)
    batch_seconds = time.monotonic() - started
    assert code == 1, stderr[-3000:]    # 1: the batch finished with a failed session

    table = read_table(out / 'cohort.csv')
    assert list(table) == [*SESSIONS, CORRUPT]
    assert table[CORRUPT]['status'].startswith('failed: cannot read'), table[CORRUPT]
    assert not (out / CORRUPT / cohort.MODEL).exists()
    with open(out / killed / cohort.ATTEMPTS) as fh:
        attempts = [int(p) for p in fh.read().split()]
    assert len(attempts) == 2 and attempts[0] == pid and attempts[1] != pid, attempts
    differences = []
    for name in SESSIONS:
        row = table[name]
        assert row['status'] == 'ok', row
        assert row['subject'] == name.split('_')[0]
        assert abs(float(row['duration_s']) - DURATION) < 0.05
        assert float(row['fit_residual']) > 0
        with open(out / name / cohort.ROW) as fh:
            core = json.load(fh)['core']
        assert core in os.sched_getaffinity(0), f'{name} ran unpinned (core {core})'
        model = modelfile.load(out / name / cohort.MODEL)
        expected = modelfile.load(ref / f'{name}.yaml')
        diff = max(max_relative_difference(model.model, expected.model),
                   max_relative_difference(model.std, expected.std))
        assert diff <= 1e-9, f'{name}: models differ by {diff:.3g} relative'
        differences.append(diff)
        for k, muscle in enumerate(model.model.muscle_names):
            assert float(row[f'{muscle}.max_isometric_force']) == pytest.approx(
                float(model.model.muscles.max_isometric_force[k]), rel=1e-9)
            assert float(row[f'{muscle}.max_isometric_force.std']) == pytest.approx(
                model.std['muscles'][muscle]['max_isometric_force'], rel=1e-5)
        assert (out / name / cohort.REPORT / 'summary.md').is_file()
    assert (out / 'strengths.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    summary = (out / 'summary.md').read_text()
    assert '5 sessions of 3 subjects: 4 identified, 0 already complete, 1 failed.' in summary

    # the batch again, its complete sessions only: nothing is identified, Ray is not started
    stamps = {n: os.stat(out / n / cohort.MODEL).st_mtime_ns for n in SESSIONS}
    again = time.monotonic()
    code, stdout, stderr = finish(diffmsm('identify-batch', *(bags[n] for n in SESSIONS),
                                          '--out', out, '--params-file', params, '--quiet',
                                          env=env))
    rerun_seconds = time.monotonic() - again
    assert code == 0, stderr[-3000:]
    assert '0 run as Ray tasks' in stdout
    table = read_table(out / 'cohort.csv')
    assert [r['status'] for r in table.values()] == ['skipped: complete'] * len(SESSIONS)
    assert {n: os.stat(out / n / cohort.MODEL).st_mtime_ns for n in SESSIONS} == stamps
    assert all(float(table[n]['duration_s']) > 0 for n in SESSIONS)
    # the re-run only reads the model files (9.4 s measured, most of it the interpreter)
    assert rerun_seconds < batch_seconds, (rerun_seconds, batch_seconds)


def test_identify_batch_without_ray_says_how_to_get_it(tmp_path):
    code = ('import sys\nsys.modules["ray"] = None\n'
            'from diffmsm_ros.cli.main import main\n'
            f'sys.exit(main(["identify-batch", "x", "--out", {str(tmp_path)!r}]))\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "pip install 'diffmsm_ros[cluster]'" in done.stderr
    assert 'Traceback' not in done.stderr
