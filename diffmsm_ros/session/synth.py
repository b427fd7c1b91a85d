"""
Synthetic rehabilitation sessions.

A hidden subject, smooth co-contracting excitations, and an exoskeleton that tracks a
therapy trajectory (PD plus gravity compensation).

Everything here is pure numpy/JAX.  Samples are at the model step h: sample k holds the
state at t_k = k h and the inputs held over [t_k, t_k+1).
"""

import dataclasses

from diffmsm_ros.model import dynamics, integrators, skeleton
from diffmsm_ros.model.dynamics import Inputs, State
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ExoController:
    """
    Who keeps the joint on the therapy trajectory.

    The exoskeleton: PD tracking (N m/rad, N m s/rad) with gravity compensation, saturated
    at tau_max.  With ``exo_on`` false it applies no torque and the subject tracks the
    trajectory voluntarily instead: excitations get a feedback term (per N m of PD demand)
    on the muscles that pull the right way.
    """

    kp: float = 60.0
    kd: float = 3.5
    tau_max: float = 40.0
    gravity_compensation: bool = True
    exo_on: bool = True
    voluntary: float = 0.02    # excitation per N m of tracking demand when the exo is off


@dataclasses.dataclass
class Session:
    """A simulated session, one row per model step."""

    t: np.ndarray          # [T] s
    q: np.ndarray          # [T, n_joints] rad
    qd: np.ndarray         # [T, n_joints] rad/s
    a: np.ndarray          # [T, n_muscles]
    u: np.ndarray          # [T, n_muscles] excitation
    tau_exo: np.ndarray    # [T, n_joints] N m
    tau_mus: np.ndarray    # [T, n_joints] N m
    q_ref: np.ndarray      # [T, n_joints] rad


def smooth_noise(t, count, f_lo, f_hi, rng, components=8):
    """Band-limited signals in [-1, 1]: sums of sinusoids with random frequencies/phases."""
    freq = rng.uniform(f_lo, f_hi, size=(count, components))
    phase = rng.uniform(0, 2 * np.pi, size=(count, components))
    amp = rng.uniform(0.5, 1.0, size=(count, components))
    arg = 2 * np.pi * freq[..., None] * t[None, None, :] + phase[..., None]
    x = np.einsum('ck,ckt->tc', amp, np.sin(arg))
    return x / amp.sum(axis=1)[None, :]


def flexor_mask(model):
    """Mark muscles whose pull raises the first joint they span at mid-range."""
    q_mid = np.asarray(model.skeleton.joint_range).mean(axis=1)
    arm = np.asarray(dynamics.moment_arms(model, jnp.asarray(q_mid)))
    first = np.argmax(np.abs(arm) > 0, axis=1)
    return arm[np.arange(arm.shape[0]), first] < 0


def excitations(model, t, rng, level=1.0, u_min=0.001):
    """
    Smooth, co-contracting excitations [T, n_muscles] in [u_min, 1].

    A shared co-contraction drive, a flexor and an extensor drive, and an individual part
    per muscle (so that every muscle's strength is identifiable).
    """
    nm = model.n_muscles
    flex = flexor_mask(model)
    shared = 0.5 + 0.5 * smooth_noise(t, 1, 0.05, 0.4, rng)[:, 0]
    drives = np.clip(smooth_noise(t, 2, 0.1, 1.2, rng), 0, None)
    own = 0.5 + 0.5 * smooth_noise(t, nm, 0.1, 2.0, rng)
    group = np.where(flex[None, :], drives[:, :1], drives[:, 1:2])
    u = level * (0.02 + 0.1 * shared[:, None] + 0.25 * group + 0.3 * own ** 2)
    return np.clip(u, u_min, 1.0)


def therapy_reference(model, t, rng, margin=0.25):
    """Slow flexion-extension cycles inside each joint's range: q_ref, qd_ref [T, n]."""
    rng_j = np.asarray(model.skeleton.joint_range)
    lo, hi = rng_j[:, 0] + margin, rng_j[:, 1] - margin
    mid, amp = 0.5 * (lo + hi), 0.5 * (hi - lo)
    n = model.n_joints
    f = rng.uniform(0.08, 0.3, size=(n, 3))
    ph = rng.uniform(0, 2 * np.pi, size=(n, 3))
    w = np.array([0.6, 0.25, 0.15])
    arg = 2 * np.pi * f[None] * t[:, None, None] + ph[None]
    q = mid + amp * np.einsum('k,tnk->tn', w, np.sin(arg))
    qd = amp * np.einsum('k,tnk->tn', w, 2 * np.pi * f[None] * np.cos(arg))
    return q, qd


def exo_torque(model, controller, q, qd, q_ref, qd_ref):
    """Compute the exoskeleton joint torque (N m) of the tracking controller."""
    tau = controller.kp * (q_ref - q) + controller.kd * (qd_ref - qd)
    if controller.gravity_compensation:
        tau = tau - skeleton.gravity_torque(model.skeleton, q)
    return jnp.clip(tau, -controller.tau_max, controller.tau_max)


def control(model, exo_model, controller, q, qd, q_ref, qd_ref, u_base):
    """Exoskeleton torque (N m) and the excitations actually sent to the muscles."""
    demand = exo_torque(exo_model, controller, q, qd, q_ref, qd_ref)
    if controller.exo_on:
        return demand, u_base
    arm = dynamics.moment_arms(model, q)                          # [nm, nq]
    pull = -arm / (jnp.max(jnp.abs(arm)) + 1e-12)                 # > 0: raises q
    u = jnp.clip(u_base + controller.voluntary * (pull @ demand), 0.001, 1.0)
    return jnp.zeros_like(demand), u


def closed_loop(model, exo_model, controller, state0, u, q_ref, qd_ref, method='euler'):
    """
    Roll out the subject under the exoskeleton; returns states, exo torque, muscle torque.

    ``exo_model`` is what the exoskeleton believes (gravity compensation uses it).  The
    returned states also carry the excitations actually applied (``states.a`` is activation;
    see ``simulate`` for u).
    """
    step = integrators.STEPS[method]
    h = model.timestep

    def body(state, xs):
        u_k, qr_k, qdr_k = xs
        tau, u_applied = control(model, exo_model, controller, state.q, state.qd, qr_k, qdr_k,
                                 u_k)
        torque = dynamics.muscle_torque(model, state.q, state.qd, state.a)
        nxt = step(model, state, Inputs(u_applied, tau), h)
        return nxt, (state, tau, torque, u_applied)

    _, (states, tau, torque, applied) = jax.lax.scan(body, state0, (u, q_ref, qd_ref))
    return states, tau, torque, applied


def simulate(truth, template, duration, seed, controller=ExoController(), level=1.0):
    """Simulate ``truth`` in closed loop; the exo compensates gravity with ``template``."""
    h = truth.timestep
    t = np.arange(int(round(duration / h))) * h
    rng = np.random.default_rng(seed)
    u = excitations(truth, t, rng, level)
    q_ref, qd_ref = therapy_reference(truth, t, rng)
    state0 = State(jnp.asarray(q_ref[0]), jnp.asarray(qd_ref[0]), jnp.asarray(u[0]))
    run = jax.jit(closed_loop, static_argnums=(2,))
    states, tau, torque, applied = run(truth, template, controller, state0, jnp.asarray(u),
                                       jnp.asarray(q_ref), jnp.asarray(qd_ref))
    return Session(t=t, q=np.asarray(states.q), qd=np.asarray(states.qd),
                   a=np.asarray(states.a), u=np.asarray(applied), tau_exo=np.asarray(tau),
                   tau_mus=np.asarray(torque), q_ref=q_ref)
