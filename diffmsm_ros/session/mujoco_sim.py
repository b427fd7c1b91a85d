"""
MuJoCo itself as a simulator of sessions and as the oracle of tests (needs ``mujoco``).

An MJCF model is driven with given excitations and an exoskeleton controller; the subject
inside it can be replaced by a SubjectFile's muscle and segment parameters (a hidden subject).
"""

import dataclasses

import mujoco
import numpy as np


@dataclasses.dataclass
class MujocoRun:
    """Per-step record of a MuJoCo simulation (state before the step, inputs over it)."""

    q: np.ndarray
    qd: np.ndarray
    act: np.ndarray
    qacc: np.ndarray          # from mj_forward (damping explicit)
    tau_muscle: np.ndarray    # sum over muscle actuators of moment * force (N m)
    tau_exo: np.ndarray       # N m on each modelled joint
    u: np.ndarray


class MujocoOracle:
    """An MJCF model with named joints, muscles and an exoskeleton motor."""

    def __init__(self, xml, joint_names, muscle_names, exo_actuators):
        self.m = mujoco.MjModel.from_xml_path(xml)
        self.d = mujoco.MjData(self.m)
        obj = mujoco.mjtObj
        self.joints = [mujoco.mj_name2id(self.m, obj.mjOBJ_JOINT, n) for n in joint_names]
        self.qadr = np.array([self.m.jnt_qposadr[j] for j in self.joints])
        self.dadr = np.array([self.m.jnt_dofadr[j] for j in self.joints])
        self.muscles = np.array([mujoco.mj_name2id(self.m, obj.mjOBJ_ACTUATOR, n)
                                 for n in muscle_names])
        self.act_adr = np.array([self.m.actuator_actadr[i] for i in self.muscles])
        self.exo = np.array([mujoco.mj_name2id(self.m, obj.mjOBJ_ACTUATOR, n)
                             for n in exo_actuators])
        self.gear = np.array([self.m.actuator_gear[i][0] for i in self.exo])

    def moment(self):
        dense = np.zeros((self.m.nu, self.m.nv))
        mujoco.mju_sparse2dense(dense, self.d.actuator_moment, self.d.moment_rownnz,
                                self.d.moment_rowadr, self.d.moment_colind)
        return dense

    def lengths_and_moments(self, q):
        """Muscle lengths and moment arms [n_muscles, n_joints] at joint angles q."""
        self.d.qpos[:] = self.m.qpos0
        self.d.qpos[self.qadr] = q
        mujoco.mj_fwdPosition(self.m, self.d)
        moment = self.moment()[np.ix_(self.muscles, self.dadr)]
        return self.d.actuator_length[self.muscles].copy(), moment

    def run(self, q0, qd0, a0, u, controller=None, tau_exo=None, excitation=None,
            before_step=None):
        """
        Simulate len(u) steps; exo torque from ``controller(k, q, qd)`` or ``tau_exo``.

        ``excitation(k)``, if given, is called after the controller and overrides ``u[k]``;
        ``before_step(k)``, if given, is called first (to change the model as time goes).
        """
        m, d = self.m, self.d
        mujoco.mj_resetData(m, d)
        d.qpos[self.qadr] = q0
        d.qvel[self.dadr] = qd0
        d.act[self.act_adr] = a0
        steps = len(u)
        nj = len(self.joints)
        rec = {k: [] for k in ('q', 'qd', 'act', 'qacc', 'tau_muscle', 'tau_exo', 'u')}
        for k in range(steps):
            if before_step is not None:
                before_step(k)
            q, qd = d.qpos[self.qadr].copy(), d.qvel[self.dadr].copy()
            tau = controller(k, q, qd) if controller is not None else tau_exo[k]
            u_k = excitation(k) if excitation is not None else u[k]
            d.ctrl[self.muscles] = u_k
            d.ctrl[self.exo] = np.asarray(tau) / self.gear
            mujoco.mj_forward(m, d)
            moment = self.moment()[np.ix_(self.muscles, self.dadr)]
            rec['q'].append(q)
            rec['qd'].append(qd)
            rec['act'].append(d.act[self.act_adr].copy())
            rec['qacc'].append(d.qacc[self.dadr].copy())
            rec['tau_muscle'].append(moment.T @ d.actuator_force[self.muscles])
            rec['tau_exo'].append(np.asarray(tau, dtype=float).reshape(nj))
            mujoco.mj_Euler(m, d)
            rec['u'].append(np.array(u_k, dtype=float))
        return MujocoRun(**{k: np.array(v) for k, v in rec.items()})


def therapy_run(oracle, model, duration, seed):
    """
    Run the oracle for ``duration`` s under the exoskeleton tracking a therapy trajectory.

    Excitations, trajectory and controller as in ``synth`` (gravity compensation with
    ``model``); returns the MujocoRun and (u, q_ref, qd_ref, controller).
    """
    import jax
    from diffmsm_ros.session import synth
    t = np.arange(int(round(duration / model.timestep))) * model.timestep
    rng = np.random.default_rng(seed)
    u = synth.excitations(model, t, rng)
    q_ref, qd_ref = synth.therapy_reference(model, t, rng)
    controller = synth.ExoController()
    exo = jax.jit(lambda q, qd, qr, qdr: synth.exo_torque(model, controller, q, qd, qr, qdr))
    run = oracle.run(q_ref[0], qd_ref[0], u[0], u,
                     controller=lambda k, q, qd: np.asarray(exo(q, qd, q_ref[k], qd_ref[k])))
    return run, (u, q_ref, qd_ref, controller)


def model_along_run(model, run):
    """Our model's muscle torque (N m) and joint acceleration along a MuJoCo run, [T, nq]."""
    import jax
    from diffmsm_ros.model import dynamics
    from diffmsm_ros.model.dynamics import Inputs, State
    torque = jax.jit(jax.vmap(lambda q, qd, a: dynamics.muscle_torque(model, q, qd, a)))(
        run.q, run.qd, run.act)
    acc = jax.jit(jax.vmap(lambda q, qd, a, u, te: dynamics.joint_acceleration(
        model, State(q, qd, a), Inputs(u, te))))(run.q, run.qd, run.act, run.u, run.tau_exo)
    return np.asarray(torque), np.asarray(acc)


def apply_subject(oracle, subject, template):
    """
    Put ``subject``'s muscle parameters and segment masses into the MuJoCo model.

    Segment masses and inertias are scaled by the subject/template mass ratio over every
    body of the segment (centres of mass unchanged), as ``session.subjects.perturb`` does.
    """
    m = oracle.m
    mus = subject.model.muscles
    for k, i in enumerate(oracle.muscles):
        r0, r1 = float(mus.curve['range0'][k]), float(mus.curve['range1'][k])
        l0 = float(mus.optimal_fiber_length[k])
        tsl = float(mus.tendon_slack_length[k])
        m.actuator_gainprm[i][2] = float(mus.max_isometric_force[k])
        m.actuator_biasprm[i][2] = float(mus.max_isometric_force[k])
        m.actuator_lengthrange[i] = [tsl + r0 * l0, tsl + r1 * l0]
        m.actuator_dynprm[i][0] = float(mus.tau_act[k])
        m.actuator_dynprm[i][1] = float(mus.tau_deact[k])
    sk, sk0 = subject.model.skeleton, template.model.skeleton
    for j, jid in enumerate(oracle.joints):
        ratio = float(sk.mass[j]) / float(sk0.mass[j])
        root = m.jnt_bodyid[jid]
        nxt = m.jnt_bodyid[oracle.joints[j + 1]] if j + 1 < len(oracle.joints) else None
        for b in range(m.nbody):
            if _descends(m, b, root) and not (nxt is not None and _descends(m, b, nxt)):
                m.body_mass[b] *= ratio
                m.body_inertia[b] *= ratio
        m.dof_damping[oracle.dadr[j]] = float(sk.damping[j])


def _descends(m, body, ancestor):
    while body != 0:
        if body == ancestor:
            return True
        body = m.body_parentid[body]
    return False


def exo_motor_names(template):
    """Names of the exoskeleton motors of an imported template, in joint order."""
    exo = template.extra.get('exoskeleton')
    motors = [exo] if isinstance(exo, dict) else list(exo or [])
    by_joint = {m['joint']: m['actuator'] for m in motors}
    missing = [j for j in template.model.joint_names if j not in by_joint]
    if missing:
        raise ValueError(f'the template has no exoskeleton motor on {missing}')
    return [by_joint[j] for j in template.model.joint_names]


def fatigue(duration, drops):
    """
    Return strength factors over a session, ``factor(t) -> [n_muscles]``.

    Muscle m loses ``drops[m]`` (a fraction) of its strength by ``duration``, fast at first
    and levelling off as under intermittent loads (a saturating exponential, 90 % of its
    course run by then); for ``simulate_session``.
    """
    drops = np.asarray(drops, dtype=float)
    rate = np.log(10.0) / duration

    def factor(t):
        return 1.0 - drops * (1.0 - np.exp(-rate * t)) / 0.9

    return factor


def simulate_session(xml, template, truth, duration, seed, controller=None, noise=0.0,
                     exo_actuators=None, strength=None):
    """
    Simulate a session of the hidden subject ``truth`` with MuJoCo.

    Same excitations, therapy trajectory and exoskeleton controller as
    ``synth.simulate``; the exoskeleton compensates gravity with the template.
    ``strength(t)`` (optional, ``fatigue``) scales every muscle's maximum force over time.
    Returns (synth.Session with the noisy angles in ``q``, MujocoRun).
    """
    import jax
    from diffmsm_ros.session import synth
    controller = controller or synth.ExoController()
    model = template.model
    exo_actuators = exo_actuators or exo_motor_names(template)
    oracle = MujocoOracle(xml, model.joint_names, model.muscle_names, exo_actuators)
    apply_subject(oracle, truth, template)
    h = model.timestep
    t = np.arange(int(round(duration / h))) * h
    rng = np.random.default_rng(seed)
    u_base = synth.excitations(model, t, rng)
    q_ref, qd_ref = synth.therapy_reference(model, t, rng)
    law = jax.jit(lambda q, qd, qr, qdr, ub: synth.control(
        truth.model, model, controller, q, qd, qr, qdr, ub))
    applied = np.zeros_like(u_base)

    def excite(k, q, qd):
        tau, u = law(q, qd, q_ref[k], qd_ref[k], u_base[k])
        applied[k] = np.asarray(u)
        return np.asarray(tau)

    force = np.asarray(truth.model.muscles.max_isometric_force, dtype=float)

    def fatigue_step(k):
        scaled = force * strength(t[k])
        for j, i in enumerate(oracle.muscles):
            oracle.m.actuator_gainprm[i][2] = scaled[j]
            oracle.m.actuator_biasprm[i][2] = scaled[j]

    run = oracle.run(q_ref[0], qd_ref[0], u_base[0], u_base, controller=excite,
                     excitation=lambda k: applied[k],
                     before_step=None if strength is None else fatigue_step)
    q = run.q + (noise * rng.standard_normal(run.q.shape) if noise > 0 else 0.0)
    session = synth.Session(t=t, q=q, qd=run.qd, a=run.act, u=applied.copy(),
                            tau_exo=run.tau_exo, tau_mus=run.tau_muscle, q_ref=q_ref)
    return session, run
