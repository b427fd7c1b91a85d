"""
A global starting point that needs no initial guess of the muscle shapes.

Activations are known from EMG and vary independently between muscles, so the torque each
muscle contributes can be told apart without its Hill parameters: with spline bases in the
muscle-tendon length l, muscle m's active force is written F0 FL(l) (1 + 2 ldot /
(L0 vmax)) ~ a_m (sum_b c_mb B_b(l) + ldot sum_b d_mb B_b(l)), its passive force as a spline
in l, and the segments through their barycentric parameters, in which inverse dynamics is
linear.  One linear least-squares fit of the equation of motion gives every muscle's active
force-length curve; a grid search over (operating length, optimal fibre length) with the
strength in closed form then turns each curve into Hill parameters.  Both steps are global.
A sweep over the muscles on the full equation error then moves any muscle that the curve
fit left on the wrong side of its force-length curve.
"""

import dataclasses
import functools

from diffmsm_ros import traced
from diffmsm_ros.identify import excitation
from diffmsm_ros.identify.window import savgol_derivative
from diffmsm_ros.model import dynamics, muscles
import jax
import jax.numpy as jnp
import numpy as np

ACTIVE_BASIS = 10
PASSIVE_BASIS = 5
OPERATING_STEPS = np.linspace(-1.0, 1.0, 201)   # L_ref offsets (normalised length)
# optimal fibre length factors: near the start for the curve fits (an active force-length
# curve seen over part of its range says little about its width), wide for the sweeps
NEAR_FIBRE_GRID = np.log(np.array([0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6]))
WIDE_FIBRE_GRID = np.linspace(np.log(0.4), np.log(2.5), 17)
SWEEP_STRIDE = 4       # the sweep's grid search reads every 4th sample (8 ms at 500 Hz)


def smoothed_acceleration(win):
    """Joint accelerations (rad/s^2) from the window's velocities, smoothed."""
    return jnp.asarray(savgol_derivative(np.asarray(win.qd), win.h, deriv=1))


def _hat_basis(x, lo, hi, count):
    """Piecewise-linear (hat) basis [T, count] on a uniform grid over [lo, hi]."""
    knots = np.linspace(lo, hi, count)
    width = (hi - lo) / (count - 1)
    return np.clip(1.0 - np.abs(x[:, None] - knots[None, :]) / width, 0.0, None)


_COMPILED = {}


def _jitted(problem, key, build):
    """
    Jitted helper for ``problem`` (compiled once per process, key and window shape).

    ``build()`` returns a function of (frame, ...): the problem's frame is its first
    argument, so problems of one structure share the compiled code (frame.py).
    """
    if key not in _COMPILED:
        _COMPILED[key] = traced.jit(build(), name=f'decompose.{key!r}')
    return functools.partial(_COMPILED[key], problem.frame)


def _muscle_kinematics(model, win):
    """Muscle lengths, velocities, moment arms and activations over a window."""
    def one(q, qd):
        length, velocity = jax.jvp(lambda x: dynamics.muscle_lengths(model, x), (q,), (qd,))
        return length, velocity, dynamics.moment_arms(model, q)

    length, velocity, arm = jax.vmap(one)(win.q, win.qd)
    a = excitation.activations(model, excitation.excitations(model, win), win.h)
    return length, velocity, arm, a


def _kinematics_fn():
    def run(frame, z, win):
        return _muscle_kinematics(frame.model_at(z), win)

    return run


def _segment_fn(idx):
    def run(frame, z, win, qdd):
        z = jnp.asarray(z)

        def need(zs):
            model = frame.model_at(z.at[idx].set(zs))
            return jax.vmap(lambda q, qd, a: dynamics.inverse_dynamics(model, q, qd, a))(
                win.q, win.qd, qdd).reshape(-1)

        return need(z[idx]), jax.jacfwd(need)(z[idx])

    return run


def _window_rows(problem, z, win, idx):
    """Per-sample kinematics, activations and inverse-dynamics rows of one window."""
    qdd = smoothed_acceleration(win)
    kin = _jitted(problem, 'kinematics', _kinematics_fn)
    length, velocity, arm, a = (np.asarray(x) for x in kin(jnp.asarray(z), win))
    steps, nq = np.asarray(win.q).shape
    if idx.size:
        seg_fn = _jitted(problem, ('segments', tuple(idx)), lambda: _segment_fn(idx))
        base, seg = (np.asarray(x) for x in seg_fn(jnp.asarray(z), win, qdd))
    else:
        need = jax.vmap(lambda q, qd, acc: dynamics.inverse_dynamics(
            problem.model_at(jnp.asarray(z)), q, qd, acc))(win.q, win.qd, qdd)
        base, seg = np.asarray(need).reshape(-1), np.zeros((steps * nq, 0))
    rows = np.repeat(np.sqrt(np.asarray(win.weight)), nq)
    target = (base - np.asarray(win.tau_exo).reshape(-1) - seg @ np.asarray(z)[idx]) * rows
    return {'length': length, 'velocity': velocity, 'arm': arm, 'a': a,
            'weight': np.sqrt(np.asarray(win.weight)), 'target': target,
            'seg': -seg * rows[:, None]}


def fit_curves(problem, z, wins, ridge=1e-6):
    """Linear fit of the equation of motion over windows; per-muscle active curves."""
    model = problem.template
    space = problem.space
    idx = np.array([k for k, e in enumerate(space.entries)
                    if e.section in ('segments', 'joints')], dtype=int)
    wins = wins if isinstance(wins, (list, tuple)) else [wins]
    parts = [_window_rows(problem, z, w, idx) for w in wins]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    length, velocity, arm, a, weight = (cat[k] for k in ('length', 'velocity', 'arm', 'a',
                                                         'weight'))
    steps, nq = arm.shape[0], arm.shape[2]
    cols, layout = [], []
    for m in range(model.n_muscles):
        lo, hi = np.min(length[:, m]), np.max(length[:, m])
        basis = _hat_basis(length[:, m], lo, hi, ACTIVE_BASIS)
        for part, values in (('active', basis * a[:, m:m + 1]),
                             ('velocity', basis * (a[:, m] * velocity[:, m])[:, None]),
                             ('passive', _hat_basis(length[:, m], lo, hi, PASSIVE_BASIS))):
            block = values[:, None, :] * arm[:, m, :, None]          # [T, nq, B]
            cols.append((block * weight[:, None, None]).reshape(steps * nq, -1))
            layout.append((m, part, values.shape[1], lo, hi))
    design = np.concatenate(cols + [cat['seg']], axis=1)
    scale = np.linalg.norm(design, axis=0) + 1e-30
    d = design / scale
    coef = np.linalg.solve(d.T @ d + ridge * np.eye(d.shape[1]), d.T @ cat['target']) / scale
    curves, at = [], 0
    for m, part, count, lo, hi in layout:
        if part == 'active':
            # per window, so that the grid search compiles once per window shape; samples
            # without weight (gaps) count with weight 0
            curves.append({'coef': coef[at:at + count], 'lo': lo, 'hi': hi,
                           'windows': [(p['length'][:, m],
                                        p['a'][:, m] ** 2 * (p['weight'] > 0)) for p in parts]})
        at += count
    return curves, idx, coef[at:]


def _unit_muscle(frame, base, m, k_l0, k_t, dl, dr):
    """Muscle m with a 1 N strength, its L0 moved by dl (log) and operating length by dr."""
    zz = base.at[k_l0].add(dl).at[k_t].add(dr / jnp.asarray(frame.space.scale)[k_t])
    mus = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[m], frame.model_at(zz).muscles)
    return dataclasses.replace(mus, max_isometric_force=jnp.ones((), base.dtype))


def _grid_fn(fibre_grid):
    """
    Return the sums of one window for the curve fit over the (fibre, operating length) grid.

    Per grid point (sum w g target, sum w g^2) with g the unit muscle's active force-length
    curve: summed over windows they give the least-squares strength and its misfit.
    """
    def run(frame, z, m, k_l0, k_t, lengths, w, target):
        base = jnp.asarray(z)

        def cost(dl, dr):
            unit = _unit_muscle(frame, base, m, k_l0, k_t, dl, dr)
            zero = jnp.zeros_like(lengths)

            def active(speed):
                return (muscles.forces(unit, 1.0, lengths, speed)[0]
                        - muscles.forces(unit, 0.0, lengths, speed)[0])

            g = active(zero)                                   # -FL(l) of muscle m
            return jnp.sum(w * g * target), jnp.sum(w * g * g)

        return jax.vmap(lambda dl: jax.vmap(lambda dr: cost(dl, dr))(
            jnp.asarray(OPERATING_STEPS)))(jnp.asarray(fibre_grid))

    return run


def _grid_allowed(space, z, k_l0, k_t, fibre_grid):
    """[fibre, operating] mask of grid points whose slack length stays in its bounds."""
    c = space.reference[k_t] + space.scale[k_t] * z[k_t] + OPERATING_STEPS[None, :]
    l0 = space.reference[k_l0] * np.exp(z[k_l0] + np.asarray(fibre_grid))[:, None]
    return space.slack_ok(k_t, c, l0)


def _hill_from_curve(problem, z, m, curve):
    """Grid over (operating length, fibre length); strength by least squares on the curve."""
    space = problem.space
    labels = space.labels()
    name = problem.template.muscle_names[m]
    k_f0 = labels.index(f'{name}.max_isometric_force')
    k_l0 = labels.index(f'{name}.optimal_fiber_length')
    k_t = labels.index(f'{name}.tendon_slack_length')
    fibre_grid = NEAR_FIBRE_GRID
    grid = _jitted(problem, 'grid', lambda: _grid_fn(fibre_grid))
    gt, gg, tt = 0.0, 0.0, 0.0
    for lengths, w in curve['windows']:
        target = _hat_basis(lengths, curve['lo'], curve['hi'], ACTIVE_BASIS) @ curve['coef']
        sums = grid(jnp.asarray(z), m, k_l0, k_t, jnp.asarray(lengths), jnp.asarray(w),
                    jnp.asarray(target))
        gt, gg = gt + np.asarray(sums[0]), gg + np.asarray(sums[1])
        tt += float(np.sum(w * target * target))
    # the least-squares strength and the misfit it leaves, relative to the curve's size
    strengths = gt / (gg + 1e-30)
    costs = (tt - 2 * strengths * gt + strengths ** 2 * gg) / (tt + 1e-30)
    allowed = _grid_allowed(space, np.asarray(z), k_l0, k_t, fibre_grid)
    costs = np.where((strengths > 0) & allowed, costs, np.inf)
    out = np.asarray(z, dtype=float).copy()
    if not np.isfinite(costs).any():
        return out          # no positive strength explains the curve: keep the muscle as is
    i, j = np.unravel_index(np.argmin(costs), costs.shape)
    out[k_l0] += fibre_grid[i]
    out[k_t] += OPERATING_STEPS[j] / space.scale[k_t]
    out[k_f0] = np.log(strengths[i, j] / space.reference[k_f0])
    return out


def global_start(problem, z0, wins):
    """Hill parameters and segment coordinates from the decomposition (see module doc)."""
    z = np.asarray(z0, dtype=float).copy()
    labels = problem.space.labels()
    # segment and joint coordinates stay at z0: their regression is ill-conditioned along
    # combinations motion does not determine; the equation-error polish adjusts them
    curves, _, _ = fit_curves(problem, z, wins)
    for m, name in enumerate(problem.template.muscle_names):
        needed = [f'{name}.{f}' for f in ('max_isometric_force', 'optimal_fiber_length',
                                          'tendon_slack_length')]
        if all(n in labels for n in needed):
            z = _hill_from_curve(problem, z, m, curves[m])
    return problem.space.project(z)


def _sweep_fn(fibre_grid):
    """Equation-error cost over a (fibre length, operating length) grid for one muscle."""
    def run(frame, z, m, k_l0, k_t, length, velocity, arm, a, residual0):
        base = jnp.asarray(z)

        def cost(dl, dr):
            unit = _unit_muscle(frame, base, m, k_l0, k_t, dl, dr)
            force, _ = muscles.forces(unit, a[:, m], length[:, m], velocity[:, m])
            g = arm[:, m, :] * force[:, None]                     # torque per newton of F0
            strength = jnp.clip(-jnp.sum(residual0 * g) / (jnp.sum(g * g) + 1e-30), 0.0)
            r = residual0 + strength * g
            return jnp.sum(r * r), strength

        return jax.vmap(lambda dl: jax.vmap(lambda dr: cost(dl, dr))(
            jnp.asarray(OPERATING_STEPS)))(jnp.asarray(fibre_grid))

    return run


def _torque_parts_fn():
    def run(frame, z, win, qdd):
        model = frame.model_at(z)
        length, velocity, arm, a = _muscle_kinematics(model, win)
        forces, _ = muscles.forces(model.muscles, a, length, velocity)
        rest = win.tau_exo - jax.vmap(lambda q, qd, acc: dynamics.inverse_dynamics(
            model, q, qd, acc))(win.q, win.qd, qdd)
        w = jnp.sqrt(win.weight)[:, None]
        return length, velocity, arm * w[:, :, None], a, forces, rest * w

    return run


def sweep_muscles(problem, z, wins):
    """
    Move each muscle's (L0, operating length) to the best point of a wide grid, in one pass.

    Each muscle's point is chosen for the equation error with every other parameter held,
    its strength re-solved in closed form.  Escapes basins where one muscle sits on the
    wrong side.
    """
    space = problem.space
    labels = space.labels()
    wins = wins if isinstance(wins, (list, tuple)) else [wins]
    parts_fn = _jitted(problem, 'torque-parts', _torque_parts_fn)
    fibre_grid = WIDE_FIBRE_GRID
    sweep = _jitted(problem, 'sweep', lambda: _sweep_fn(fibre_grid))
    z = np.asarray(z, dtype=float).copy()
    for m, name in enumerate(problem.template.muscle_names):
        keys = [f'{name}.{f}' for f in ('max_isometric_force', 'optimal_fiber_length',
                                        'tendon_slack_length')]
        if not all(k in labels for k in keys):
            continue
        k_f0, k_l0, k_t = (labels.index(k) for k in keys)
        total = 0.0
        strengths = []
        for w in wins:
            length, velocity, arm, a, forces, rest = parts_fn(
                jnp.asarray(z), w, smoothed_acceleration(w))
            others = forces.at[:, m].set(0.0)
            residual0 = rest + jnp.einsum('tmj,tm->tj', arm, others)
            c, s = sweep(jnp.asarray(z), m, k_l0, k_t,
                         *(x[::SWEEP_STRIDE] for x in (length, velocity, arm, a, residual0)))
            total = total + np.asarray(c)
            strengths.append(np.asarray(s))
        total = np.where(_grid_allowed(space, z, k_l0, k_t, fibre_grid), total, np.inf)
        i, j = np.unravel_index(np.argmin(total), total.shape)
        strength = float(np.mean([s[i, j] for s in strengths]))
        if strength <= 0:
            continue
        z[k_l0] += fibre_grid[i]
        z[k_t] += OPERATING_STEPS[j] / space.scale[k_t]
        z[k_f0] = np.log(strength / space.reference[k_f0])
        z = space.project(z)
    return z
