"""
Uncertainty and identifiability from the Gauss-Newton matrix.

With residuals r (scaled by sigma) and Jacobian J in the normalised space, the data carry
information F = J^T J / s^2, s^2 the residual variance.  Adding the prior's precision gives
the posterior covariance; 1-sigma values are mapped back to SI.  Directions in which the
data alone leave a large spread are reported as weakly determined combinations, named by
their largest components; the strength scale (all forces and inertias together) is checked
by name because it is the classic one (not identifiable without a known external torque).
With raw EMG the envelope's random error, not the encoders, limits what the data determine:
its information (``envelope_information``) then bounds each 1-sigma from below and is the
one the weak directions and the strength scale are read from.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

FORCE_LIKE = {'max_isometric_force', 'mass', 'inertia', 'damping', 'armature'}


@dataclasses.dataclass
class Analysis:
    std: np.ndarray                 # 1-sigma per parameter, SI
    std_z: np.ndarray               # 1-sigma per parameter, normalised units
    residual_sigma: float           # RMS of the data residual (sigma units)
    weak: list                      # [{'std': float, 'combination': str, 'terms': [...]}]
    scale_std: float                # normalised 1-sigma of the common strength scale
    warnings: list
    samples: int
    widening: float = 1.0           # largest factor the sandwich estimate widened a 1-sigma
    envelope_widening: float = 1.0  # largest factor the envelope's error widened a 1-sigma
    drift_widening: float = 1.0     # largest factor the declared drift (a Walk) widened one


@dataclasses.dataclass(frozen=True)
class Walk:
    """
    A random walk of the parameters while the data were taken (the declared drift).

    A fit of constant parameters to data over which they drifted estimates a weighted mean
    of their course, not their value at the end: ``walk_covariance`` gives the spread that
    adds about the value at the time the estimate is for.
    """

    hessians: np.ndarray    # [B, P, P] the data blocks' shares of J^T J (objective units)
    ages: np.ndarray        # [B] s from each block's data to the time the estimate is for
    prior_age: float        # s from the time the prior (a carried belief) is about to then
    rate: np.ndarray        # [P] variance the walk adds per second (normalised units^2 / s)


def walk_covariance(bread, parts, rate):
    """
    Covariance [P, P] a random walk adds to a linearised estimate about its newest value.

    The estimate is x = bread sum_k H_k theta(t_k) (plus noise), ``parts`` the (H_k, age
    a_k) of the data blocks and the prior, ``bread`` the inverse of sum_k H_k.  With
    Cov(theta(t_j), theta(t_k)) about the newest value = diag(rate) min(a_j, a_k),
    its covariance is bread M bread, M = sum_jk H_j Q H_k min(a_j, a_k), summed as
    the integral over s of G(s) Q G(s), G(s) the information of the data older than s.
    """
    rate = np.asarray(rate, dtype=float)
    ordered = sorted(parts, key=lambda part: -part[1])
    ages = [max(float(age), 0.0) for _, age in ordered] + [0.0]
    middle = np.zeros_like(bread)
    older = np.zeros_like(bread)
    for k, (info, _) in enumerate(ordered):
        older = older + info
        span = ages[k] - ages[k + 1]
        if span > 0:
            middle += span * (older * rate[None, :]) @ older
    out = bread @ middle @ bread
    return 0.5 * (out + out.T)


def scale_direction(space, z):
    """Return the unit z-direction of scaling every force-like parameter by one factor."""
    mask = np.asarray([e.field in FORCE_LIKE for e in space.entries], dtype=float)
    if not mask.any():
        return jnp.zeros(space.size)
    theta = space.from_z(jnp.asarray(z, dtype=jnp.float64))
    _, v = jax.jvp(lambda eps: space.to_z(theta * (1.0 + eps * mask)),
                   (jnp.asarray(0.0),), (jnp.asarray(1.0),))
    return v / jnp.linalg.norm(v)


def _combination(vec, labels, top=4):
    order = np.argsort(-np.abs(vec))[:top]
    terms = [(labels[i], float(vec[i])) for i in order if abs(vec[i]) > 0.05]
    text = ' '.join(f'{c:+.2f} {name}' for name, c in terms)
    return text, terms


def sandwich_widening(cov, meat):
    """
    Factor (>= 1) per parameter that widens the Gauss-Newton 1-sigma to the sandwich one.

    ``cov`` is the Gauss-Newton covariance (the inverse of the data's and the prior's
    information), ``meat`` the spread of the scores in the same units: the data blocks'
    and the prior's.  The sandwich covariance cov meat cov does not assume white
    residuals: when they are correlated in time, as an EMG envelope's error makes them, or
    a model mismatch does, it is wider than the Gauss-Newton one, which then understates
    the uncertainty.
    """
    wide = np.diag(cov @ np.asarray(meat, dtype=float) @ cov)
    narrow = np.clip(np.diag(cov), 1e-300, None)
    return np.sqrt(np.maximum(1.0, np.clip(wide, 0, None) / narrow))


def analyse(space, z, hess, half_cost, n, prior_std, external_torque=None,
            weak_threshold=0.05, scale_threshold=0.05, jacobian=None, scale=None,
            scores=None, widen_warning=2.0, input_info=None, prior_info=None, walk=None,
            prior_spread=None):
    """
    Uncertainties and weak directions at z from the data normal equations J^T J.

    ``jacobian`` (d theta / d z) and ``scale`` (``scale_direction``) may be passed in,
    computed by jitted code; otherwise they are computed here.  With ``scores`` (the score
    spread of ``shooting_normal_equations``) each 1-sigma is the larger of the Gauss-Newton
    and the sandwich one (correlations kept), with a warning when that widens any by more
    than ``widen_warning``.  With ``input_info`` (the information the EMG envelope's error
    leaves, same units as J^T J / s^2) each 1-sigma is at least the spread that information
    allows any estimate (its Cramer-Rao bound, prior left out), and the weak directions and
    the strength scale are read from it.  ``prior_info`` (objective units, like J^T J) is
    the information carried from earlier data and the template prior (a
    ``posterior.Belief``'s); without it the prior is the template's, N(0, prior_std^2).
    Carried information is scaled by the residual variance as J^T J is, when that is
    above 1.  ``prior_spread`` is the carried mean's covariance as an estimate (a
    ``Belief``'s spread; default the inverse of ``prior_info``): the prior's part of the
    sandwich's meat, so that what earlier data carried counts with the widening their
    residuals earned (scaled as ``prior_info`` is).  With a ``walk`` (a declared drift)
    each 1-sigma is about the parameters' value at the end of the data, not their mean
    over it: the walk's spread is added.
    """
    hess = np.asarray(hess, dtype=float)
    p = hess.shape[0]
    s2 = max(2.0 * float(half_cost) / max(n - p, 1), 1e-30)
    info = hess / s2
    if prior_info is None:
        prior = np.eye(p) / prior_std ** 2
    else:
        prior = np.asarray(prior_info, dtype=float) / max(s2, 1.0)
    cov = np.linalg.inv(info + prior)
    if scores is None:
        widen = np.ones(p)
    else:
        prior_meat = prior if prior_spread is None else \
            prior @ (np.asarray(prior_spread, dtype=float) * max(s2, 1.0)) @ prior
        widen = sandwich_widening(cov, np.asarray(scores, dtype=float) / s2 ** 2 + prior_meat)
    envelope = np.ones(p)
    if input_info is not None:
        input_info = np.asarray(input_info, dtype=float)
        # the data's spread alone (the fit weights the encoders far above the prior, so an
        # estimate scatters as the envelope's information says), at most the prior's
        floor = 1e-12 * max(np.trace(input_info) / p, 1e-300)
        wide = np.diag(np.linalg.pinv(input_info + floor * np.eye(p), hermitian=True))
        wide = np.minimum(wide, prior_std ** 2)
        envelope = np.sqrt(np.maximum(1.0, wide / np.clip(np.diag(cov), 1e-300, None)))
        info = input_info
    drifted = 0.0
    if walk is not None:
        parts = [(b / s2, age) for b, age in zip(walk.hessians, walk.ages)]
        drifted = walk_covariance(cov, parts + [(prior, walk.prior_age)], walk.rate)
    still = cov * np.outer(np.maximum(widen, envelope), np.maximum(widen, envelope))
    cov = still + drifted
    drift = np.sqrt(np.diag(cov) / np.clip(np.diag(still), 1e-300, None))
    std_z = np.sqrt(np.clip(np.diag(cov), 0, None))
    if jacobian is None:
        jacobian = jax.jacfwd(space.from_z)(jnp.asarray(z, dtype=jnp.float64))
    dtheta = np.asarray(jacobian)
    cov_theta = dtheta @ cov @ dtheta.T
    labels = space.labels()
    # data-only spread along the eigenvectors of the information matrix
    evals, evecs = np.linalg.eigh(info)
    weak = []
    for lam, vec in zip(evals, evecs.T):
        spread = 1.0 / np.sqrt(max(lam, 1e-300))
        if spread > weak_threshold:
            text, terms = _combination(vec, labels)
            weak.append({'std': float(min(spread, 1e6)), 'combination': text,
                         'terms': [[name, c] for name, c in terms]})
    weak.sort(key=lambda w: -w['std'])
    v = np.asarray(scale_direction(space, z) if scale is None else scale)
    scale_std = float(1.0 / np.sqrt(max(v @ info @ v, 1e-300))) if v.any() else 0.0
    warnings = []
    if v.any() and scale_std > scale_threshold:
        spread = f'1-sigma {100 * min(scale_std, 1e4):.3g} % from the data'
        if external_torque is not None and external_torque < 1e-3:
            warnings.append(
                'strength scale not identifiable: no exoskeleton torque in the data, so all '
                'muscle forces and segment inertias can grow together '
                f'({spread}); a known external torque is needed')
        else:
            warnings.append(
                'strength scale poorly determined: all muscle forces and segment inertias '
                f'growing together is only weakly constrained ({spread})')
    if weak:
        warnings.append(f'{len(weak)} weakly determined parameter combination(s); '
                        'see weak_directions')
    if input_info is not None and np.any(hess):
        warnings.append(
            'raw EMG: 1-sigma values include the random error of the EMG envelope, which '
            f'widens them up to {envelope.max():.3g} x (median {np.median(envelope):.3g} x) '
            'beyond what the encoders alone would allow')
    elif input_info is not None:
        # a carried belief alone (``Problem.analyse_belief``): no encoder-only spread to
        # compare with
        warnings.append(
            'raw EMG: 1-sigma values are what the data leave after the random error of the '
            'EMG envelope (the corrected fit, carried over the session)')
    if widen.max() > widen_warning:
        warnings.append(
            'residuals correlated in time (an EMG envelope error or a model mismatch): '
            f'1-sigma values widened by the sandwich estimate, up to {widen.max():.3g} x '
            f'(median {np.median(widen):.3g} x)')
    return Analysis(std=np.sqrt(np.clip(np.diag(cov_theta), 0, None)), std_z=std_z,
                    residual_sigma=float(np.sqrt(2.0 * half_cost / max(n, 1))),
                    weak=weak, scale_std=scale_std, warnings=warnings, samples=n,
                    widening=float(widen.max()), envelope_widening=float(envelope.max()),
                    drift_widening=float(drift.max()))
