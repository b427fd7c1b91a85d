"""
Residuals on measured motion for least-squares identification.

- Multiple shooting: from the measured state at the start of each segment (K model steps),
  simulate with the measured exoskeleton torque and the EMG-driven activations and compare
  joint angles (and optionally velocities).  Optionally each segment's initial angle and
  velocity are profiled out (the residual is projected off their sensitivities), which makes
  the fit insensitive to encoder noise and velocity estimates at segment starts.
- Equation error: muscle plus exo torque against inverse dynamics from smoothed derivatives;
  cheap, linear in strengths and inertias, used to initialise.
- Prior: distance of the normalised parameters from the template.
"""

import dataclasses

from diffmsm_ros.identify import excitation
from diffmsm_ros.model import dynamics, integrators, sensitivity
from diffmsm_ros.model.dynamics import Inputs, State
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ShootingConfig:
    """Segment length (model steps), residual scales and options."""

    segment: int = 50
    sigma_q: float = 1e-3          # rad: angle residual scale
    sigma_qd: float = 0.05         # rad/s: velocity residual scale
    velocity_weight: float = 0.0   # 0 = angles only
    profile: bool = True           # profile out each segment's initial angle and velocity
    method: str = 'euler'
    excitation_noise: float = 0.0  # relative 1-sigma of each segment's excitation gains
    excitation_terms: int = 1      # per muscle and segment: 1 = gain, 2 = gain and trend


def segment_count(length, segment):
    """Count whole shooting segments in a window of ``length`` samples."""
    return max(0, (length - 1) // segment)


def _segment_rollout(model, q0, qd0, a0, u, tau, h, method):
    """Angles and velocities after each step of one segment, [K, nq] each."""
    if method != 'euler':
        states = integrators.rollout(model, State(q0, qd0, a0), Inputs(u, tau), h, method)
        return states.q, states.qd
    # the activations do not depend on the motion: integrate them first, then the joints
    # with the rollout whose Jacobian costs 2 nq full linearisations per step
    a = excitation.activations(model, u, h, method, a0=a0)
    x = sensitivity.motion_rollout(model, jnp.concatenate([q0, qd0]), a, tau, h)
    nq = q0.shape[0]
    return x[:, :nq], x[:, nq:]


def nuisance_count(nq, nm, config):
    """Per-segment nuisance parameters: initial angles and velocities, excitation gains."""
    return 2 * nq + (nm * config.excitation_terms if config.excitation_noise > 0 else 0)


def nuisance_weights(nq, nm, config, dtype):
    """Prior weights of the nuisance parameters (0: free, 1/sigma: excitation gains)."""
    free = jnp.zeros(2 * nq, dtype=dtype)
    if config.excitation_noise <= 0:
        return free
    count = nm * config.excitation_terms
    return jnp.concatenate([free, jnp.full(count, 1.0 / config.excitation_noise, dtype)])


def shooting_segments(model, win, config, offset=None):
    """
    Unprojected residuals of every segment, [n_seg, R] (angles, then velocities).

    ``offset`` is added to every segment's measured initial (angle, velocity) and, when
    ``excitation_noise`` > 0, scales each muscle's excitation within the segment by
    (1 + offset[2 nq + m]).  Its derivative gives each segment's sensitivity to its own
    nuisance parameters in one tangent per component, because a segment depends on no
    other segment's.
    """
    k = config.segment
    n_seg = segment_count(win.length, k)
    u = excitation.excitations(model, win)
    a = excitation.activations(model, u, win.h, config.method)
    span = n_seg * k
    nq = win.q.shape[1]
    count = nuisance_count(nq, u.shape[1], config)
    offset = jnp.zeros(count, dtype=win.q.dtype) if offset is None else offset
    nm = u.shape[1]
    gain = 1.0
    if count > 2 * nq:
        # excitation errors within a segment: a gain, and a linear trend over the segment
        terms = offset[2 * nq:].reshape(config.excitation_terms, nm)
        ramp = jnp.linspace(-1.0, 1.0, k, dtype=u.dtype)
        gain = 1.0 + terms[0][None, :]
        if config.excitation_terms > 1:
            gain = gain + ramp[:, None] * terms[1][None, :]

    def seg(x):
        return x[:span].reshape((n_seg, k) + x.shape[1:])

    def target(x):
        return x[1:span + 1].reshape((n_seg, k) + x.shape[1:])

    q0 = seg(win.q)[:, 0] + offset[None, :nq]
    qd0 = seg(win.qd)[:, 0] + offset[None, nq:2 * nq]
    weight = jnp.minimum(jnp.min(seg(win.weight), axis=1), jnp.min(target(win.weight), axis=1))

    def one(q0_i, qd0_i, a0_i, u_i, t_i):
        return _segment_rollout(model, q0_i, qd0_i, a0_i, u_i, t_i, win.h, config.method)

    q_sim, qd_sim = jax.vmap(one)(q0, qd0, seg(a)[:, 0], seg(u) * gain,
                                  seg(jnp.asarray(win.tau_exo)))
    w = jnp.sqrt(weight)[:, None, None]
    parts = [(q_sim - target(win.q)) / config.sigma_q * w]
    if config.velocity_weight > 0:
        scale = jnp.sqrt(config.velocity_weight) / config.sigma_qd
        parts.append((qd_sim - target(win.qd)) * scale * w)
    return jnp.concatenate([p.reshape(n_seg, -1) for p in parts], axis=1)


def shooting_residuals(model, win, config):
    """Residual vector of all segments, flattened; nuisance parameters profiled out."""
    if not config.profile:
        return shooting_segments(model, win, config).reshape(-1)
    nq, nm = win.q.shape[1], win.emg.shape[1]
    count = nuisance_count(nq, nm, config)
    zero = jnp.zeros(count, dtype=win.q.dtype)
    r, sens = jax.vmap(lambda v: jax.jvp(lambda c: shooting_segments(model, win, config, c),
                                         (zero,), (v,)), out_axes=(None, -1))(
        jnp.eye(count, dtype=win.q.dtype))
    weights = nuisance_weights(nq, nm, config, win.q.dtype)
    return project_out(sens, r, weights).reshape(-1)


def project_out(s, x, weights):
    """
    Remove from each segment's rows their regularised least-squares fit by s.

    ``s`` [n_seg, R, C] sensitivities to C nuisance parameters with prior weights
    ``weights`` [C] (0 = free); ``x`` [n_seg, R] (a residual) or [n_seg, R, P] (a
    Jacobian).  Rows for the priors are appended, so the result is [n_seg, R + C, ...] and
    its squared norm is the profiled objective.
    """
    n_seg, _, count = s.shape
    prior = jnp.broadcast_to(jnp.diag(weights), (n_seg, count, count))
    s = jnp.concatenate([s, prior], axis=1)
    vec = x.ndim == 2
    xm = x[..., None] if vec else x
    xm = jnp.concatenate([xm, jnp.zeros((n_seg, count, xm.shape[-1]), xm.dtype)], axis=1)
    sts = jnp.einsum('nki,nkj->nij', s, s)
    eye = jnp.eye(count, dtype=s.dtype)
    reg = 1e-12 * jnp.trace(sts, axis1=1, axis2=2)[:, None, None] * eye + 1e-30 * eye
    coef = jnp.linalg.solve(sts + reg, jnp.einsum('nki,nkp->nip', s, xm))
    out = xm - jnp.einsum('nki,nip->nkp', s, coef)
    return out[..., 0] if vec else out


def shooting_normal_equations(residual_segments, z, count, weights, profile, block=1):
    """
    (J^T J, J^T r, 0.5 |r|^2, rows, S, H_b) of the (profiled) shooting residual at z.

    S = sum over blocks of ``block`` consecutive segments of g g^T, g = J_b^T r_b the
    block's share of the gradient: the spread of the score for the sandwich covariance,
    which stays honest when residuals are correlated within a block (a partial last block
    counts as one).  H_b [blocks, P, P] are the blocks' shares of J^T J, in time order
    (what a parameter drifting within the window does to the fit: ``uncertainty.Walk``).
    With profiling, the Jacobian is projected like the residual (Kaufman's approximation
    of variable projection), which needs P + C tangents instead of P (C + 1).
    """
    p = z.shape[0]
    zero = jnp.zeros(count, dtype=z.dtype)
    if not profile:
        def segments(zz):
            r = residual_segments(zz, zero)
            return r, r

        jz, r = jax.jacfwd(segments, has_aux=True)(z)
    else:
        def both(w):
            r = residual_segments(w[:p], w[p:])
            return r, r

        jac, r = jax.jacfwd(both, has_aux=True)(jnp.concatenate([z, zero]))
        jz, sens = jac[..., :p], jac[..., p:]
        r = project_out(sens, r, weights)
        jz = project_out(sens, jz, weights)
    scores = jnp.einsum('nk,nkp->np', r, jz)
    pad = (-scores.shape[0]) % block
    scores = jnp.concatenate([scores, jnp.zeros((pad, p), scores.dtype)])
    scores = scores.reshape(-1, block, p).sum(axis=1)
    rows = jnp.concatenate([jz, jnp.zeros((pad,) + jz.shape[1:], jz.dtype)])
    rows = rows.reshape(scores.shape[0], -1, p)
    blocks = jnp.einsum('bkp,bkq->bpq', rows, rows)
    r = r.reshape(-1)
    return (blocks.sum(axis=0), jz.reshape(-1, p).T @ r, 0.5 * jnp.sum(r * r), r.shape[0],
            scores.T @ scores, blocks)


@sensitivity.model_part_derivative
def _equation_error(model, q, qd, qdd, a, tau):
    """Muscle plus exo torque minus the torque the motion needs, one sample (N m)."""
    need = dynamics.inverse_dynamics(model, q, qd, qdd)
    return dynamics.muscle_torque(model, q, qd, a) + tau - need


def equation_error_residuals(model, win, qdd, sigma_tau=1.0, stride=1):
    """
    Inverse-dynamics torque error (N m / sigma_tau) at every ``stride``-th sample, flattened.

    Activations follow the excitations on every sample; a strided residual is scaled by
    sqrt(stride), so that its sum of squares estimates the full one's.
    """
    u = excitation.excitations(model, win)
    a = excitation.activations(model, u, win.h)
    pick = slice(None, None, stride)
    r = jax.vmap(_equation_error, in_axes=(None, 0, 0, 0, 0, 0))(
        model, win.q[pick], win.qd[pick], qdd[pick], a[pick], win.tau_exo[pick])
    return (r * jnp.sqrt(stride * win.weight[pick])[:, None] / sigma_tau).reshape(-1)


def prior_residuals(z, z_prior, prior_std):
    """(z - z_prior) / prior_std: keeps weakly determined directions near the template."""
    return (z - z_prior) / prior_std
