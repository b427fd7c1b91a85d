"""
The bundled two-joint arm against MuJoCo simulating the same reduced MyoArm.

Shoulder elevation and elbow flexion, eight muscles (three of them biarticular), and an
exoskeleton motor on each joint.
"""

from diffmsm_ros.files import modelfile, myoarm
from diffmsm_ros.model import dynamics
from diffmsm_ros.model.dynamics import State
from diffmsm_ros.session import synth
from diffmsm_ros.session.mujoco_sim import (exo_motor_names, model_along_run, MujocoOracle,
                                            therapy_run)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sessions import rms

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def setting(arm, arm_xml):
    model = arm.model
    oracle = MujocoOracle(arm_xml, model.joint_names, model.muscle_names,
                          exo_motor_names(arm))
    run, inputs = therapy_run(oracle, model, 10.0, 11)
    return model, oracle, run, inputs


def test_bundled_template_is_the_reduced_arm(arm, arm_xml):
    fresh = modelfile.from_doc(myoarm.import_arm(arm_xml)).model
    model = arm.model
    assert model.joint_names == myoarm.JOINTS
    assert sorted(model.muscle_names) == sorted(myoarm.MUSCLES)
    spans = {m: tuple(model.joint_names[j] for j in b.joints)
             for b in model.geometry for m in (model.muscle_names[i] for i in b.muscles)}
    both = {m for m, joints in spans.items() if len(joints) == 2}
    assert both == {'BIClong', 'BICshort', 'TRIlong'}
    for a, b in zip(jax.tree_util.tree_leaves(model), jax.tree_util.tree_leaves(fresh)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def test_geometry_held_out(setting):
    """Lengths and both moment arms at random poses between the grid nodes."""
    model, oracle, _, _ = setting
    rng = np.random.default_rng(2)
    lo, hi = np.asarray(model.skeleton.joint_range).T
    f = jax.jit(lambda q: (dynamics.muscle_lengths(model, q), dynamics.moment_arms(model, q)))
    length_err, arm_err, scale = [], [], []
    for _ in range(200):
        q = rng.uniform(lo + 0.2, hi - 0.2)
        length, moment = oracle.lengths_and_moments(q)
        ours_l, ours_r = (np.asarray(x) for x in f(jnp.asarray(q)))
        length_err.append(np.abs(ours_l - length))
        arm_err.append(np.abs(np.abs(ours_r) - np.abs(moment)))
        scale.append(np.abs(moment))
    rel = np.max(arm_err, axis=0) / np.maximum(np.max(scale, axis=0), 1e-9)
    assert np.max(length_err) <= 1e-6
    assert rel.max() <= 1e-3


def test_torque_and_acceleration_along_mujoco_trajectory(setting):
    model, _, run, _ = setting
    torque, acc = model_along_run(model, run)
    torque_err = rms(torque - run.tau_muscle, axis=0) / rms(run.tau_muscle, axis=0)
    acc_err = rms(acc - run.qacc, axis=0) / rms(run.qacc, axis=0)
    assert torque.shape[1] == 2
    assert np.all(torque_err <= 1e-2) and np.all(acc_err <= 1e-2)
    # both joints moved and both had real muscle torque
    assert np.all(np.ptp(run.q, axis=0) > 0.5) and np.all(rms(run.tau_muscle, axis=0) > 1.0)


def test_closed_loop_joint_angles(setting):
    model, _, run, (u, q_ref, qd_ref, controller) = setting
    state0 = State(jnp.asarray(q_ref[0]), jnp.asarray(qd_ref[0]), jnp.asarray(u[0]))
    states, _, _, _ = jax.jit(synth.closed_loop, static_argnums=(2,))(
        model, model, controller, state0, jnp.asarray(u), jnp.asarray(q_ref),
        jnp.asarray(qd_ref))
    err = np.abs(np.asarray(states.q) - run.q).max(axis=0)
    assert np.all(err <= 1e-2)
