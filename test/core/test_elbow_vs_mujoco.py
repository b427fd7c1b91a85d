"""The imported MyoSuite elbow against MuJoCo simulating the same XML."""

from diffmsm_ros.model import dynamics, integrators
from diffmsm_ros.model.dynamics import Inputs, State
from diffmsm_ros.session import synth
from diffmsm_ros.session.mujoco_sim import model_along_run, MujocoOracle, therapy_run
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sessions import rms


@pytest.fixture(scope='module')
def setting(elbow, elbow_xml):
    model = elbow.model
    oracle = MujocoOracle(elbow_xml, model.joint_names, model.muscle_names, ['Exo'])
    run, inputs = therapy_run(oracle, model, 10.0, 5)
    return model, oracle, run, inputs


def test_geometry_held_out_moment_arms(setting):
    model, oracle, _, _ = setting
    # midpoints between the 0.02 rad grid nodes: never used in the fit
    lo, hi = np.asarray(model.skeleton.joint_range)[0]
    qs = np.arange(lo + 0.01, hi, 0.02)
    ours = np.array([np.asarray(dynamics.moment_arms(model, jnp.array([q])))[:, 0] for q in qs])
    theirs = np.array([oracle.lengths_and_moments(np.array([q]))[1][:, 0] for q in qs])
    rel = np.abs(ours - theirs).max(axis=0) / np.abs(theirs).max(axis=0)
    assert rel.max() <= 1e-3


def test_torque_and_acceleration_along_mujoco_trajectory(setting):
    model, _, run, _ = setting
    torque, acc = model_along_run(model, run)
    torque_err = rms(torque - run.tau_muscle) / rms(run.tau_muscle)
    acc_err = rms(acc - run.qacc) / rms(run.qacc)
    assert torque_err <= 5e-3
    assert acc_err <= 5e-3


def test_closed_and_open_loop_joint_angles(setting):
    model, _, run, (u, q_ref, qd_ref, controller) = setting
    state0 = State(jnp.asarray(q_ref[0]), jnp.asarray(qd_ref[0]), jnp.asarray(u[0]))
    states, _, _, _ = jax.jit(synth.closed_loop, static_argnums=(2,))(
        model, model, controller, state0, jnp.asarray(u), jnp.asarray(q_ref),
        jnp.asarray(qd_ref))
    closed = np.abs(np.asarray(states.q) - run.q).max()
    opened = integrators.rollout(model, State(*(jnp.asarray(x[0]) for x in (
        run.q, run.qd, run.act))), Inputs(jnp.asarray(u), jnp.asarray(run.tau_exo)))
    q_open = np.concatenate([run.q[:1], np.asarray(opened.q)[:-1]])
    two_s = int(round(2.0 / model.timestep))
    open_err = np.abs(q_open[:two_s] - run.q[:two_s]).max()
    assert closed <= 5e-3
    assert open_err <= 2e-3
    # the comparison means something: the joint really moved and muscles really pulled
    assert np.ptp(run.q) > 0.8 and rms(run.tau_muscle) > 1.0
