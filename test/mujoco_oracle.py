"""MuJoCo itself as the oracle: simulate an MJCF model with our excitations and exo controller."""

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

    def run(self, q0, qd0, a0, u, controller=None, tau_exo=None):
        """Simulate len(u) steps; exo torque from ``controller(k, q, qd)`` or ``tau_exo``."""
        m, d = self.m, self.d
        mujoco.mj_resetData(m, d)
        d.qpos[self.qadr] = q0
        d.qvel[self.dadr] = qd0
        d.act[self.act_adr] = a0
        steps = len(u)
        nj = len(self.joints)
        rec = {k: [] for k in ('q', 'qd', 'act', 'qacc', 'tau_muscle', 'tau_exo')}
        for k in range(steps):
            q, qd = d.qpos[self.qadr].copy(), d.qvel[self.dadr].copy()
            tau = controller(k, q, qd) if controller is not None else tau_exo[k]
            d.ctrl[self.muscles] = u[k]
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
        return MujocoRun(u=np.asarray(u), **{k: np.array(v) for k, v in rec.items()})
