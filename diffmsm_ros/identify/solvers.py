"""
Least-squares solvers: Levenberg-Marquardt on accumulated normal equations, and Adam.

LM works from two callables that sum over any number of windows: ``normal(z)`` returning
(J^T J, J^T r, 0.5 |r|^2) of the data residual and ``cost(z)`` returning 0.5 |r|^2; the
prior, a ``posterior.Belief`` (the template's, or what earlier data carried), is added
here.  Callers jit those per window shape
once, so a session of any length reuses the same compiled code.  Adam (optax, the Diff-MSM
baseline) follows optax's init/update shape; callers jit ``adam_update``.
"""

from typing import NamedTuple

from diffmsm_ros.identify import posterior
import jax
import jax.numpy as jnp
import numpy as np
import optax


class LMState(NamedTuple):
    z: np.ndarray         # normalised parameters
    cost: float           # objective (data + prior) at z
    lam: float            # Marquardt damping, relative to diag(J^T J)
    nu: float             # growth factor of lam after a rejected step
    accepted: bool        # did the last iteration lower the objective
    data_cost: float = float('nan')   # the data part of ``cost`` (0.5 |r|^2)


def residual_and_jacobian(residual, z, *args):
    """Residual vector and its Jacobian (forward mode: few parameters, many residuals)."""
    def twice(zz):
        r = residual(zz, *args)
        return r, r

    jac, r = jax.jacfwd(twice, has_aux=True)(z)
    return r, jac


def normal_equations(residual, z, *args):
    """(J^T J, J^T r, 0.5 |r|^2, len(r)) of ``residual`` at z."""
    r, jac = residual_and_jacobian(residual, z, *args)
    return jac.T @ jac, jac.T @ r, 0.5 * jnp.sum(r * r), r.shape[0]


def lm_init(cost, z0, prior, lam=1e-3):
    """Start LM at z0 (objective = data cost + the prior ``Belief``)."""
    z0 = np.asarray(z0, dtype=float)
    data = float(cost(z0))
    c = data + posterior.terms(prior, z0)[2]
    return LMState(z0, c if np.isfinite(c) else np.inf, lam, 2.0, True, data)


def lm_start(z0, lam=1e-3):
    """Start LM at z0 without evaluating the objective (the first iteration does)."""
    return LMState(np.asarray(z0, dtype=float), np.inf, lam, 2.0, True)


def lm_iteration(normal, cost, state, lower, upper, prior, max_tries=10,
                 project=None, valid=None, active=None, repair=None):
    """
    One Levenberg-Marquardt iteration with box bounds (projected steps).

    Linearises once, then solves (H + lam diag(H)) dz = -g, raising lam until the step
    lowers the objective (at most ``max_tries`` cost evaluations); lam follows Nielsen's
    rule on the ratio of actual to predicted decrease.  ``project`` (optional) maps a
    clipped point onto further constraints; ``valid`` (optional) refuses a trial point
    like a step that raised the objective, when the current point is valid itself (from an
    invalid point any step is allowed, so that a fit can walk back).  ``active`` (optional)
    is a pair of callables: ``held(z, step)``, the set of constraints the step would break
    at z, and ``rows(z, held)``, linear equalities (A, b) on the step that keep them; the
    step is then solved subject to those, so that active constraints do not bend it,
    through ``project``, into a rise the quadratic model cannot see.  ``repair`` (optional,
    ``(z, hess) -> z``) moves a trial point back into the feasible set in the metric of
    the quadratic model.
    """
    z = state.z
    hess, grad, data_cost = (np.asarray(x, dtype=float) for x in normal(z)[:3])
    ph, pg, pc = posterior.terms(prior, z)
    hess, grad, current = hess + ph, grad + pg, float(data_cost) + pc
    if not (np.all(np.isfinite(hess)) and np.all(np.isfinite(grad)) and np.isfinite(current)):
        return state._replace(accepted=False)
    if valid is not None and not valid(z):
        valid = None
    diag = np.diag(hess)
    diag = np.maximum(diag, 1e-9 * np.max(diag) + 1e-30)
    lam, nu = state.lam, state.nu
    for _ in range(max_tries):
        try:
            step = _damped_step(hess, grad, lam * diag, z, active)
        except np.linalg.LinAlgError:
            lam, nu = lam * nu, nu * 2.0
            continue
        z_new = np.clip(z + step, lower, upper)
        if project is not None:
            z_new = project(z_new)
        if repair is not None:
            z_new = repair(z_new, hess)
        if valid is not None and not valid(z_new):
            lam, nu = float(min(lam * nu, 1e15)), min(nu * 2.0, 1e6)
            continue
        dz = z_new - z
        predicted = -(grad @ dz + 0.5 * dz @ hess @ dz)
        data_new = float(cost(z_new))
        c_new = data_new + posterior.terms(prior, z_new)[2]
        if np.isfinite(c_new) and c_new < current and predicted > 0:
            rho = (current - c_new) / predicted
            lam = float(np.clip(lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3),
                                1e-15, 1e15))
            return LMState(z_new, c_new, lam, 2.0, True, data_new)
        lam, nu = float(min(lam * nu, 1e15)), min(nu * 2.0, 1e6)
    return LMState(z, current, lam, nu, False, float(data_cost))


def _damped_step(hess, grad, damping, z, active, rounds=4):
    """Solve (H + diag(damping)) dz = -g, subject to the equalities of ``active``."""
    matrix = hess + np.diag(damping)
    step = np.linalg.solve(matrix, -grad)
    if active is None:
        return step
    held_by, rows_of = active
    held = frozenset()
    n = step.size
    for _ in range(rounds):
        new = held | frozenset(held_by(z, step))
        if new == held:
            break
        held = new
        a, b = rows_of(z, held)
        k = b.size
        kkt = np.block([[matrix, a.T], [a, np.zeros((k, k))]])
        rhs = np.concatenate([-grad, b])
        try:
            # exact solve: the KKT matrix's small singular values (a^2 / h for stiff
            # coordinates) are real, and a truncated least-squares solve would drop them
            step = np.linalg.solve(kkt, rhs)[:n]
        except np.linalg.LinAlgError:   # dependent rows
            step = np.linalg.lstsq(kkt, rhs, rcond=1e-15)[0][:n]
    return step


class AdamState(NamedTuple):
    z: jax.Array
    opt: optax.OptState
    cost: jax.Array


def adam_init(z0, learning_rate=1e-2):
    """Start Adam (the Diff-MSM baseline) at z0."""
    opt = optax.adam(learning_rate)
    return AdamState(z0, opt.init(z0), jnp.asarray(jnp.inf, dtype=z0.dtype))


def adam_update(residual, state, lower, upper, *args, learning_rate=1e-2):
    """One Adam step on 0.5 |r|^2, projected onto the bounds."""
    def loss(z):
        r = residual(z, *args)
        return 0.5 * jnp.sum(r * r)

    cost, grad = jax.value_and_grad(loss)(state.z)
    updates, opt = optax.adam(learning_rate).update(grad, state.opt, state.z)
    z = jnp.clip(optax.apply_updates(state.z, updates), lower, upper)
    return AdamState(z, opt, cost)
