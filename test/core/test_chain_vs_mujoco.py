"""A two-joint chain with arbitrary axes, merged bodies and a locked joint, against MuJoCo."""

from chain_model import CHAIN_XML, write_chain
from diffmsm_ros.files import mjcf, modelfile
from diffmsm_ros.model import dynamics, integrators, skeleton
from diffmsm_ros.model.dynamics import Inputs, State
from diffmsm_ros.session.mujoco_sim import MujocoOracle
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

LOCK = 0.3


@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    path = write_chain(tmp_path_factory.mktemp('chain'))
    options = mjcf.ImportOptions(joints=('shoulder', 'elbow'), locked={'twist': LOCK})
    doc = mjcf.import_mjcf(path, options)
    return path, modelfile.from_doc(doc).model


def test_import_structure(chain):
    _, model = chain
    assert model.joint_names == ('shoulder', 'elbow')
    assert model.muscle_names == ('biart', 'mono', 'delt')
    spans = {tuple(model.muscle_names[i] for i in b.muscles): b.joints for b in model.geometry}
    assert spans == {('biart',): (0, 1), ('mono',): (1,), ('delt',): (0,)}
    # upper arm + strap merged; forearm + hand merged
    np.testing.assert_allclose(np.asarray(model.skeleton.mass), [2.1, 1.8])


def test_mass_matrix_bias_and_geometry(chain):
    path, model = chain
    m = mujoco.MjModel.from_xml_path(path)
    d = mujoco.MjData(m)
    rng = np.random.default_rng(0)
    kept = [0, 2]
    # compiled once: op by op, 20 draws of four functions took 24 s
    mass_matrix = jax.jit(skeleton.mass_matrix)
    bias_forces = jax.jit(skeleton.bias_forces)
    moment_arms = jax.jit(dynamics.moment_arms)
    muscle_lengths = jax.jit(dynamics.muscle_lengths)
    for _ in range(20):
        q = np.array([rng.uniform(-0.7, 1.4), rng.uniform(0.1, 2.1)])
        qd = rng.normal(size=2)
        d.qpos[:] = [q[0], LOCK, q[1]]
        d.qvel[:] = [qd[0], 0.0, qd[1]]
        mujoco.mj_forward(m, d)
        full = np.zeros((3, 3))
        mujoco.mj_fullM(m, d, full)
        mass = np.asarray(mass_matrix(model.skeleton, jnp.asarray(q)))
        bias = np.asarray(bias_forces(model.skeleton, jnp.asarray(q), jnp.asarray(qd)))
        np.testing.assert_allclose(mass, full[np.ix_(kept, kept)], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bias, d.qfrc_bias[kept], rtol=1e-10, atol=1e-12)
        dense = np.zeros((m.nu, m.nv))
        mujoco.mju_sparse2dense(dense, d.actuator_moment, d.moment_rownnz, d.moment_rowadr,
                                d.moment_colind)
        arms = np.asarray(moment_arms(model, jnp.asarray(q)))
        lengths = np.asarray(muscle_lengths(model, jnp.asarray(q)))
        np.testing.assert_allclose(lengths, d.actuator_length[2:], atol=1e-7)
        np.testing.assert_allclose(arms, dense[2:][:, kept], atol=2e-6)


def test_two_joint_simulation(tmp_path, chain):
    _, model = chain
    # MuJoCo simulates the same reduced chain: the locked joint removed, its angle built in
    xml = CHAIN_XML.replace(
        '<joint name="twist" type="hinge" axis="0 1 0" range="-1 1"/>', '').replace(
        '<body name="fore" pos="0.0 -0.3 0.0" euler="0 0.2 0">',
        '<body name="fore" pos="0.0 -0.3 0.0" euler="0 0.2 0">'
        f'<body name="fore_locked" euler="0 {LOCK} 0">')
    xml = xml.replace('</body>\n      </body>\n    </body>\n  </worldbody>',
                      '</body>\n      </body>\n    </body>\n    </body>\n  </worldbody>')
    path = tmp_path / 'reduced.xml'
    path.write_text(xml)
    oracle = MujocoOracle(str(path), model.joint_names, model.muscle_names,
                          ['exo_shoulder', 'exo_elbow'])
    steps = 1000
    t = np.arange(steps) * model.timestep
    u = 0.2 + 0.15 * np.sin(np.outer(t, [3.0, 5.0, 7.0]))
    tau = np.stack([3.0 + 1.5 * np.sin(2 * t), 1.0 + 2.0 * np.cos(3 * t)], -1)
    q0, qd0 = np.array([0.2, 0.9]), np.zeros(2)
    run = oracle.run(q0, qd0, u[0], u, tau_exo=tau)
    states = integrators.rollout(model, State(jnp.asarray(q0), jnp.asarray(qd0),
                                              jnp.asarray(u[0])),
                                 Inputs(jnp.asarray(u), jnp.asarray(tau)))
    q = np.concatenate([q0[None], np.asarray(states.q)[:-1]])
    limits = np.asarray(model.skeleton.joint_range)
    assert np.all((run.q > limits[:, 0]) & (run.q < limits[:, 1])), 'stay off the joint limits'
    assert np.ptp(run.q, axis=0).min() > 0.1
    assert np.abs(q - run.q).max() <= 1e-4
