"""
Raw EMG: the equation-error fit corrected for the envelope's random error.

A raw-EMG envelope is u (1 + eta) (``envelope_information``), so each activation is
a (1 + eps) with eps of relative variance s_m^2, and each muscle's active torque T_m (force
is linear in activation) carries the same factor.  The equation error
e = sum_m T_m + tau_exo - tau_need then holds noise in its *regressors*: at any parameters,
over the noise, E|e|^2 = |e_0|^2 + sum_m s_m^2 |T_m,0|^2 and E|T_m|^2 = (1 + s_m^2) |T_m,0|^2
(0: without the noise).  A plain fit minimises the first, and the extra term pulls it away
from the truth: with co-contracting muscles the noise dilutes what tells them apart, like
a regression on noisy inputs.  On a 15-minute MuJoCo session with raw EMG, it ended with
every strength 3-12 % low and a mean muscle error of 10.3 %, also when started at the truth.
Subtracting the noise's expected share gives an objective whose expectation, at every z, is
the noise-free one (a corrected score):

    Q(z) = 1/2 sum_t |W_t e_t|^2 - 1/2 sum_t sum_m c_m |W_t T_m,t|^2,  c_m = s_m^2 / (1 + s_m^2)

Started at the truth, the same session then ends 7.3 % off, the strengths within 0.1-1.3 %;
the Cramer-Rao mean 1-sigma of those 15 minutes is 7.9 %.

The objective has wrong valleys, and from the template a fit falls into them (on two of
four 15-minute sessions, 40-50 % off, the triceps' lengths at their bounds, though the
truth's valley is far lower).  ``Problem.corrected_fit`` finds the start on every
``COARSE``-th window and then fits on all of them:

1. a coordinate scan of the plain weighted objective (``coordinate_scan``: each muscle
   coordinate over a grid of its box, the others held, two sweeps);
2. LM rounds with the correction brought in (c times ``RAMP``: Q is not convex far from
   its minimum; started at the template it walked off to 13.9 %);
3. an escape: each muscle put back at the template in turn and fitted again, kept when Q
   drops (a wrong valley holds a muscle's three parameters together);
4. ``FINE`` rounds on every window.

The prior holds the fibre and tendon slack lengths to ``identification.length_prior``
(relative, 20 %) about the template; the triceps' lengths are weakly determined by raw EMG.

- W_t whitens by the envelope noise V_t = sum_m S0_m T_m T_m^T (plus a small floor, so that
  moments with every muscle quiet do not dominate), held for one round of the fit.
- s_m^2 is measured, not assumed: the session's own excitations are run through the
  model's activation dynamics with and without a draw of the envelope noise (its density
  S0 through the envelope low-pass; a fixed seed).  The activation's low-pass takes the
  envelope's 9.3 % RMS error to about 7.9 %.
- Only the muscle parameters are fitted.  Bones enter the motion the encoders measure, not
  the EMG, but left free here they wandered off (28 % muscle error), so they stay where the
  fit starts.
"""

import dataclasses

from diffmsm_ros.emg.envelope import noise_bandwidth
from diffmsm_ros.identify import envelope_information, excitation
import jax
import jax.numpy as jnp
import numpy as np
from scipy import signal

RAMP = (0.0, 0.5, 1.0, 1.0)   # share of the correction in each coarse round
FINE = (1.0, 1.0)             # ... in each round on every window, after the coarse ones
COARSE = 4                    # the start (scan and coarse rounds) reads every 4th window
SCAN_POINTS = 15              # values per strength or fibre length coordinate in the scan
SCAN_SLACK_POINTS = 25        # values per slack length coordinate (a wider box)
SCAN_SWEEPS = 2               # passes of the scan over the coordinates
ITERATIONS = 60               # LM iterations per round at most
REJECTED = 3                  # consecutive rejected LM steps that end a round
FLOOR = 1e-3                  # of the mean noise variance, added to every moment's
NOISE_WINDOWS = 40            # windows of the session read for the activation noise
NOISE_SECONDS = 240.0         # s of drawn activations at least (short sessions: drawn again)
NOISE_SEED = 0                # the activation noise's draw (a fixed numerical estimate)


def whitening(model, win, qdd, density, stride):
    """Whitening [S, nq, nq] of the equation error by the envelope noise (scaled to 2 dt)."""
    _, active = envelope_information.equation_parts(model, win, qdd, stride)
    noise = jnp.einsum('snm,m,skm->snk', active, density, active)
    nq = noise.shape[1]
    mean = jnp.mean(jnp.trace(noise, axis1=1, axis2=2)) / nq
    noise = noise + (FLOOR * mean + 1e-30) * jnp.eye(nq)[None]
    chol = jnp.linalg.cholesky(noise / (2.0 * stride * win.h))
    return jnp.linalg.inv(chol)


def _whitened(model, win, qdd, scale, stride):
    """Whitened equation error [S, nq] and active torques [S, nq, nm], window-weighted."""
    e, active = envelope_information.equation_parts(model, win, qdd, stride)
    w = jnp.sqrt(win.weight[::stride])
    return (jnp.einsum('sij,sj->si', scale, e) * w[:, None],
            jnp.einsum('sij,sjm->sim', scale, active) * w[:, None, None])


def objective(model_of, z, win, qdd, scale, c, stride):
    """Q of one window (module text)."""
    e, t = _whitened(model_of(z), win, qdd, scale, stride)
    return 0.5 * jnp.sum(e * e) - 0.5 * jnp.einsum('sim,sim,m->', t, t, c)


def normal_equations(model_of, z, win, qdd, scale, c, stride):
    """(Gauss-Newton Hessian, gradient, Q) of one window, the correction in both."""
    def both(zz):
        out = _whitened(model_of(zz), win, qdd, scale, stride)
        return out, out

    (je, jt), (e, t) = jax.jacfwd(both, has_aux=True)(z)
    flat = je.reshape(-1, z.shape[0])
    hess = flat.T @ flat - jnp.einsum('simp,simq,m->pq', jt, jt, c)
    grad = flat.T @ e.reshape(-1) - jnp.einsum('simp,sim,m->p', jt, t, c)
    return hess, grad, 0.5 * jnp.sum(e * e) - 0.5 * jnp.einsum('sim,sim,m->', t, t, c)


def coordinate_scan(cost, z, grids, project, sweeps=SCAN_SWEEPS):
    """
    Move z (numpy) to the lowest ``cost`` one coordinate at a time; return (z, cost).

    ``grids``: pairs (coordinate, values); each value is tried with the others held (through
    ``project``), and kept when it lowers the cost; ``sweeps`` passes over all of them.
    """
    z = np.asarray(z, dtype=float)
    best = cost(z)
    for _ in range(sweeps):
        for k, values in grids:
            for value in values:
                trial = z.copy()
                trial[k] = value
                trial = project(trial)
                c = cost(trial)
                if c < best:
                    z, best = trial, c
    return z, best


def activation_variance(model, wins, density, lowpass, order=2):
    """
    Relative variance of each muscle's activation under the envelope noise [nm].

    The first ``NOISE_WINDOWS`` windows' excitations, times (1 + eta) with eta of one-sided
    density S0 (``density``, 1/Hz) through the envelope low-pass (``lowpass`` Hz), through the
    model's activation dynamics; read where the activation is above 2 %, over fresh draws
    until ``NOISE_SECONDS`` of data.
    """
    density = np.asarray(density, dtype=float)
    h = float(wins[0].h)
    sos = signal.butter(order, lowpass, fs=1.0 / h, output='sos')
    rng = np.random.default_rng(NOISE_SEED)
    sums, counts = np.zeros(density.shape), np.zeros(density.shape)
    read = wins[:NOISE_WINDOWS]
    draws = max(1, int(np.ceil(NOISE_SECONDS / (h * sum(w.length for w in read)))))
    for win in read * draws:
        emg = np.asarray(win.emg)
        white = rng.standard_normal(emg.shape) * np.sqrt(density * 0.5 / h)[None, :]
        noisy = dataclasses.replace(
            win, emg=jnp.asarray(emg * (1.0 + signal.sosfilt(sos, white, axis=0))))
        clean, drawn = (np.asarray(excitation.activations(
            model, excitation.excitations(model, w), h)) for w in (win, noisy))
        keep = (clean > 0.02) & (np.asarray(win.weight) > 0)[:, None]
        sums += np.sum(np.where(keep, (drawn / np.where(keep, clean, 1.0) - 1.0) ** 2, 0.0),
                       axis=0)
        counts += np.sum(keep, axis=0)
    # without samples to read, the envelope's own error (the activation low-pass only shrinks it)
    envelope = density * noise_bandwidth(sos, 1.0 / h)
    return np.where(counts > 0, sums / np.maximum(counts, 1), envelope)
