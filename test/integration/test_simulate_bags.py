"""`diffmsm simulate` writes real rosbag2 files that read back with rosbags."""

import subprocess
import sys

from diffmsm_ros.files import bags, modelfile
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_typestore, Stores


def _simulate(out, *extra):
    cmd = [sys.executable, '-m', 'diffmsm_ros.cli.main', 'simulate', '--out', str(out),
           '--duration', '2', '--seed', '3', *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize('storage, emg', [('mcap', 'envelope'), ('sqlite3', 'raw')])
def test_bag_reads_back(tmp_path, elbow, storage, emg):
    out = tmp_path / 'session'
    stdout = _simulate(out, '--storage', storage, '--emg', emg)
    assert 'bag:' in stdout
    store = get_typestore(Stores.ROS2_KILTED)
    counts, types, first = {}, {}, {}
    with Reader(out / 'bag') as reader:
        assert reader.connections and all(
            c.msgtype in (bags.JOINT_STATE, bags.FLOAT_ARRAY) for c in reader.connections)
        for conn, _, raw in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            types[conn.topic] = conn.msgtype
            first.setdefault(conn.topic, store.deserialize_cdr(raw, conn.msgtype))
    steps = int(round(2.0 / elbow.model.timestep))
    assert types == {'/joint_states': bags.JOINT_STATE, '/emg': bags.FLOAT_ARRAY}
    assert counts['/joint_states'] == steps
    assert counts['/emg'] == 200          # 100 chunks per second
    js = first['/joint_states']
    assert list(js.name) == list(elbow.model.joint_names)
    assert len(js.position) == len(js.velocity) == len(js.effort) == 1
    emg_msg = first['/emg']
    dims = [(d.label, d.size) for d in emg_msg.layout.dim]
    samples = 20 if emg == 'raw' else 5
    assert dims == [('samples', samples), ('channels', elbow.model.n_muscles)]
    assert len(emg_msg.data) == samples * elbow.model.n_muscles
    truth = modelfile.load(out / 'truth.yaml')
    modelfile.check_compatible(truth, elbow)
    session = truth.extra['session']
    assert session['emg']['kind'] == emg and session['storage'] == storage
    # the hidden subject differs from the template
    assert not np.allclose(truth.model.muscles.max_isometric_force,
                           elbow.model.muscles.max_isometric_force)


def test_recording_loader_matches_simulation(tmp_path, elbow):
    out = tmp_path / 'session'
    _simulate(out)
    rec = bags.load_recording(out / 'bag', elbow.model.joint_names, 500.0,
                              elbow.model.muscle_names)
    assert rec.position.shape == (1000, 1) and rec.emg.shape == (1000, 6)
    assert np.all(np.diff(rec.joint_t) > 0) and np.all(np.diff(rec.emg_t) > 0)
    np.testing.assert_allclose(np.diff(rec.emg_t), 0.002, atol=1e-6)
    # envelope samples line up with encoder samples
    np.testing.assert_allclose(rec.emg_t, rec.joint_t, atol=1e-6)
    lo, hi = elbow.model.skeleton.joint_range[0]
    assert lo < rec.position.min() and rec.position.max() < hi
    assert np.all((rec.emg >= 0) & (rec.emg <= 1))
