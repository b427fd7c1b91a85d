"""
What the data determine when the EMG envelope's random error is the noise (raw EMG).

A raw-EMG envelope is u_m (1 + eta_m(t)): eta_m has a flat one-sided density S0_m (1/Hz,
``EnvelopeFilter.noise_density``) below the envelope low-pass.  Muscle force is nearly
linear in activation, so each muscle's active torque T_m carries the same relative error
and the equation of motion is off by sum_m T_m eta_m, a torque noise of density
V_t = sum_m S0_m T_m T_m^T.  Read every dt seconds, the equation error e(theta) then holds
the Fisher information

    F = sum_t J_t^T V_t^-1 J_t * 2 dt,   J_t = d e_t / d theta,

whatever the envelope low-pass (a wider one adds noise and independent samples alike).  No
unbiased estimator scatters less (Cramer-Rao), however precise the encoders: on the 60 s
MuJoCo session with raw EMG its muscle 1-sigma values are up to about 5 times the
Gauss-Newton ones at the fit, and a mean of 33 % at the truth (``bench/raw_emg.py``).
"""

from diffmsm_ros.identify import excitation
from diffmsm_ros.model import dynamics
import jax
import jax.numpy as jnp


def equation_parts(model, win, qdd, stride):
    """
    Equation error [S, nq] (N m) and each muscle's active torque [S, nq, nm] (N m).

    Read at every ``stride``-th sample of the window; the error is muscle plus exo torque
    minus the torque the motion needs, the active torque a_m d tau / d a_m.
    """
    u = excitation.excitations(model, win)
    a = excitation.activations(model, u, win.h)
    pick = slice(None, None, stride)

    def one(q, qd, qdd_k, a_k, tau):
        def torque(act):
            return dynamics.muscle_torque(model, q, qd, act)

        need = dynamics.inverse_dynamics(model, q, qd, qdd_k)
        active = jax.jacfwd(torque)(a_k) * a_k[None, :]
        return torque(a_k) + tau - need, active

    return jax.vmap(one)(win.q[pick], win.qd[pick], qdd[pick], a[pick], win.tau_exo[pick])


def information(model_of, z, win, qdd, density, stride):
    """
    Fisher information [P, P] in z of one window's equation error under envelope noise.

    ``model_of`` maps z to a subject model; ``density`` [nm] is S0 per muscle (1/Hz).
    Samples with zero window weight are left out.
    """
    def error(zz):
        return equation_parts(model_of(zz), win, qdd, stride)

    jac, active = jax.jacfwd(error, has_aux=True)(z)          # [S, nq, P], [S, nq, nm]
    noise = jnp.einsum('snm,m,skm->snk', active, jnp.asarray(density), active)
    nq = noise.shape[1]
    scale = jnp.mean(jnp.trace(noise, axis1=1, axis2=2)) / nq
    noise = noise + (1e-9 * scale + 1e-30) * jnp.eye(nq)[None]
    weight = win.weight[::stride]
    whitened = jnp.linalg.solve(noise, jac)
    return jnp.einsum('snp,snq,s->pq', jac, whitened, weight) * 2.0 * stride * win.h
