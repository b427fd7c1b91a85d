"""
Identification of the two-joint arm from a MuJoCo-simulated session.

The paper protocol on the arm (our own simulator, noise-free, 10 % spread) is
``bench/protocol.py --template arm``: its problem compiles for minutes, too long for the
suite; its figures are in the issue notes.

The hidden subject is the arm template with its muscle and bone parameters 10 % off; MuJoCo
simulates the reduced MyoArm wearing an exoskeleton on both joints (PD tracking with
gravity compensation), with encoder noise and envelope EMG.
"""

from diffmsm_ros.session import mujoco_sim, record, subjects
from diffmsm_ros.session.mujoco_sim import model_along_run
import numpy as np
import pytest
from sessions import ENCODER_NOISE, identify, muscle_errors, rms

pytestmark = [pytest.mark.slow, pytest.mark.mujoco]

SESSION = 30.0       # s, MuJoCo session with the exoskeleton


@pytest.fixture(scope='module')
def arm_session(arm, arm_xml):
    truth = subjects.perturb(arm, 0.1, np.random.default_rng(11))
    session, run = mujoco_sim.simulate_session(arm_xml, arm, truth, SESSION, 3,
                                               noise=ENCODER_NOISE)
    return truth, session, run, record.recording_from_session(session, with_velocity=False)


def test_offline_mujoco_arm_session(arm, arm_session):
    truth, session, run, recording = arm_session
    sf, history, _, seconds = identify(arm, recording)
    start = muscle_errors(arm.model, truth.model)
    err = muscle_errors(sf.model, truth.model)
    model = sf.model
    torque, _ = model_along_run(model, run)
    torque_error = 100 * rms(torque - run.tau_muscle, axis=0) / rms(run.tau_muscle, axis=0)
    # the exoskeleton really pushed on both joints
    assert np.all(rms(session.tau_exo, axis=0) > 1.0)
    assert start.mean() > 5.0
    assert err.mean() <= 1.0
    assert np.all(torque_error <= 2.0)
