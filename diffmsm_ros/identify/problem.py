"""
An identification problem: template, selected parameters, residuals, and jitted solver steps.

z = 0 is the template; ``fit`` runs Levenberg-Marquardt from any z on a window.  The
compiled pieces live in ``frame.py``: once per process, model structure and window shape.
"""

import functools

from diffmsm_ros.identify import (corrected, decompose, frame, params, posterior, residuals,
                                  solvers, uncertainty)
from diffmsm_ros.identify.config import IdentifyConfig
from diffmsm_ros.model.skeleton import inertia_matrix as skeleton_inertia_matrix
import jax.numpy as jnp
import numpy as np


STEP_TOLERANCE = 1e-8   # normalised units: a fit whose step is smaller has converged
NOISE_LEVEL = 1.0       # mean squared shooting residual (sigma_q units) of a fit at the noise
MUSCLE_JITTER = 0.2     # normalised std of the muscle jitter of extra robust starts
SWEEPS = 4              # most muscle sweeps of the robust start
BONE_STARTS = (('first_moments', 2.0), ('jitter', 0.1), ('first_moments', 0.5),
               ('jitter', 0.1))   # extra starts of solve: m c scale, or jitter of all z
INERTIA_FLOOR = 0.01    # of the template's smallest principal moment: fits stay above it
REPAIR_ROUNDS = 8       # most moves back above the inertia floor per trial point
EQUATION_ITERATIONS = 30   # most LM iterations of each equation-error polish (robust start)
EXCITATION_NOISE_WARNING = (
    'muscle 1-sigma values leave out the random error of the EMG envelope (excitation gains '
    'profiled, as for raw EMG, but the envelope noise was not measured): on a simulated 60 s '
    'raw-EMG session most were 2-8 times too small; read them as lower bounds')
ESCAPES = (0.67, 1.5)   # first-moment scales that kick solve's best fit out of a valley


def _as_list(wins):
    return list(wins) if isinstance(wins, (list, tuple)) else [wins]


class Problem:
    """
    Template + parameter space + residuals, with jitted per-window pieces.

    ``z = 0`` is the template.  Fits take a window or a list of windows (of one shape, so
    the compiled code is shared) and a prior (``belief``: default the template's),
    so one Problem serves any initial guess and any session length.
    """

    def __init__(self, template, config=IdentifyConfig()):
        config.validate()
        self.file = template
        self.template = template.model
        self.config = config
        self.space = params.make_space(self.template, template.bounds, config.parameters)
        h = self.template.timestep
        self.segment_steps = max(2, int(round(config.segment / h)))
        self.shooting = residuals.ShootingConfig(
            segment=self.segment_steps, sigma_q=config.sigma_q, sigma_qd=config.sigma_qd,
            velocity_weight=config.velocity_weight, profile=config.profile,
            method=config.method, excitation_noise=config.excitation_noise,
            excitation_terms=config.excitation_terms)
        self.lower = np.asarray(self.space.lower)
        self.upper = np.asarray(self.space.upper)
        self.fit_lower = np.asarray(self.space.wide_lower)
        self.fit_upper = np.asarray(self.space.wide_upper)
        # the compiled pieces take the frame (template and space) as an argument: Problems
        # of one structure share them (frame.py)
        self.frame = frame.make(self.template, self.space, self.shooting, config.prior_std)
        self._normal = functools.partial(frame.normal, self.frame)
        self._cost = functools.partial(frame.half_cost, self.frame)
        self._eq_normal = functools.partial(frame.equation_normal, self.frame)
        self._eq_cost = functools.partial(frame.equation_half_cost, self.frame)
        self._adam = functools.partial(frame.adam, self.frame)
        self.theta_of = functools.partial(frame.theta_of, self.frame.space)
        self._theta_jacobian = functools.partial(frame.theta_jacobian, self.frame.space)
        self._scale = functools.partial(frame.scale_direction, self.frame.space)
        self._inertials = functools.partial(frame.inertials, self.frame)
        self._envelope_info = functools.partial(frame.envelope_info, self.frame)
        self._segment_coordinates = np.flatnonzero(
            self.space.mask(lambda e: e.section == 'segments'))
        moments, _ = self._principal_moments(
            np.asarray(self.theta_of(jnp.zeros(self.space.size))))
        self._inertia_floors = INERTIA_FLOOR * moments[:, 0]

    # ------------------------------------------------------------------ residuals
    def model_of(self, z):
        """Subject model for normalised parameters z (compiled; named as the template)."""
        return frame.model_of(self.frame, z).replace(name=self.template.name)

    def model_at(self, z):
        """Subject model for normalised parameters z."""
        return self.frame.model_at(z)

    def unphysical(self, z):
        """
        Reason the parameters z cannot describe a body, or '' if they can.

        Non-finite values, a segment mass that is not positive, or an inertia tensor (about
        the centre of mass) that is not positive definite.
        """
        theta, mass, inertia = (np.asarray(v) for v in self._inertials(
            jnp.asarray(z, dtype=jnp.float64)))
        if not np.all(np.isfinite(theta)):
            return 'non-finite parameters'
        if np.any(mass <= 0):
            return 'non-positive segment mass'
        tensors = np.asarray(skeleton_inertia_matrix(inertia))
        if tensors.size and np.min(np.linalg.eigvalsh(tensors)) <= 0:
            return 'inertia not positive definite'
        return ''

    def analyse(self, z, hess, half_cost, count, external_torque=None, scores=None,
                wins=None, envelope_noise=None, prior=None, carried_envelope=None,
                walk=None):
        """
        Uncertainty analysis at z (``uncertainty.analyse``) with jitted derivatives.

        With raw EMG, ``envelope_noise`` (S0 per muscle, 1/Hz, measured by the envelope
        filter) and the windows ``wins`` add the information the envelope's random error
        leaves (``envelope_information``), which then bounds every 1-sigma from below.
        With profiled excitation gains but no measured envelope noise it warns that the
        1-sigma values leave that error out.  ``prior`` (a ``belief``) is the information
        carried from earlier data; default the template prior.  ``carried_envelope`` is the
        envelope information of the data absorbed into it; ``walk`` (``uncertainty.Walk``)
        the declared drift while the data were taken.
        """
        zz = jnp.asarray(z, dtype=jnp.float64)
        input_info = None
        if envelope_noise is not None and wins is not None:
            input_info = self.envelope_information(zz, wins, envelope_noise)
        if input_info is not None and carried_envelope is not None:
            input_info = input_info + carried_envelope
        carried = None if prior is None else self.belief(prior)
        analysis = uncertainty.analyse(self.space, z, hess, half_cost, count,
                                       self.config.prior_std, external_torque=external_torque,
                                       jacobian=self._theta_jacobian(zz), scale=self._scale(zz),
                                       scores=scores, input_info=input_info,
                                       prior_info=None if carried is None else carried.info,
                                       walk=walk, prior_spread=None if carried is None else
                                       carried.spread)
        if self.config.excitation_noise > 0 and input_info is None:
            analysis.warnings.append(EXCITATION_NOISE_WARNING)
        return analysis

    def analyse_belief(self, z, belief, count):
        """
        Uncertainty analysis of a carried belief alone (``tracking``, raw EMG).

        Its information is what the envelope's error leaves of the data (the corrected
        objective's, whitened by that error) and the prior's: it gives the 1-sigma values,
        the weak directions and the strength scale.  ``count``: samples it carries.
        """
        zz = jnp.asarray(z, dtype=jnp.float64)
        info = np.asarray(belief.info, dtype=float)
        return uncertainty.analyse(self.space, z, np.zeros_like(info), 0.0, count,
                                   self.config.prior_std, jacobian=self._theta_jacobian(zz),
                                   scale=self._scale(zz), input_info=info, prior_info=info)

    def envelope_information(self, z, wins, density):
        """
        Information [P, P] the windows hold when the envelope error is the noise.

        ``density`` is S0 per muscle (1/Hz); returns None unless it holds one finite,
        positive value per muscle.
        """
        density = np.asarray(density, dtype=float)
        if (density.shape != (self.template.n_muscles,) or not np.all(np.isfinite(density))
                or np.any(density <= 0)):
            return None
        zz = jnp.asarray(z, dtype=jnp.float64)
        return sum(np.asarray(self._envelope_info(zz, w, decompose.smoothed_acceleration(w),
                                                  density))
                   for w in _as_list(wins))

    def belief(self, prior=None):
        """
        Return the prior as a ``posterior.Belief``.

        None is the template prior; an array is a prior of the template's spread centred
        there; a Belief (what earlier data carried) is used as it is.
        """
        if isinstance(prior, posterior.Belief):
            return prior
        return posterior.template(self.space.size, self.config.prior_std, prior)

    # ------------------------------------------------------------------ data terms
    def normal(self, z, wins, blocks=False):
        """
        Sum (J^T J, J^T r, 0.5 |r|^2, residual count, score spread) over windows.

        The score spread is the sandwich covariance's middle (``shooting_normal_equations``).
        With ``blocks``, a sixth item: per window, its blocks' shares of J^T J [B, P, P]
        (``block_ages`` says when each block's data were taken).
        """
        z = jnp.asarray(z, dtype=jnp.float64)
        parts = [self._normal(z, w) for w in _as_list(wins)]
        out = (sum(np.asarray(p[0]) for p in parts), sum(np.asarray(p[1]) for p in parts),
               sum(float(p[2]) for p in parts), sum(int(p[3]) for p in parts),
               sum(np.asarray(p[4]) for p in parts))
        return out + ([np.asarray(p[5]) for p in parts],) if blocks else out

    def block_ages(self, length, count):
        """
        Seconds from the middle of each of ``count`` score blocks to a window's last sample.

        A window of ``length`` samples is cut into shooting segments from its first sample,
        and consecutive segments into blocks of ``frame.SCORE_BLOCK`` s (``normal``'s).
        """
        h = self.template.timestep
        block = frame.score_block(self.segment_steps, h) * self.segment_steps
        span = residuals.segment_count(length, self.segment_steps) * self.segment_steps
        starts = np.arange(count) * block
        middles = 0.5 * (starts + np.minimum(starts + block, span))
        return (length - 1 - middles) * h

    def half_cost(self, z, wins):
        """0.5 |r|^2 of the shooting residual summed over windows."""
        z = jnp.asarray(z, dtype=jnp.float64)
        return sum(float(self._cost(z, w)) for w in _as_list(wins))

    def cost(self, z, wins):
        """Mean squared shooting residual (sigma_q units) of a window or a list of them."""
        return self.mean_cost(self.half_cost(z, wins), wins)

    def mean_cost(self, half_cost, wins):
        """Mean squared shooting residual of windows from their summed 0.5 |r|^2."""
        count = sum(residuals.segment_count(w.length, self.segment_steps)
                    for w in _as_list(wins)) * self.segment_steps * self.template.n_joints
        return 2.0 * half_cost / max(count, 1)

    # ------------------------------------------------------------------ solving
    def lm_init(self, z0, wins, prior=None):
        return solvers.lm_init(lambda z: self.half_cost(z, wins), z0, self.belief(prior))

    def lm_step(self, state, wins, prior=None, mask=None, valid=None):
        """
        One LM iteration on the shooting residual (parameters outside ``mask`` held).

        Trial points that ``valid(z)`` (optional) refuses are not taken while the current
        point is valid.  Steps are held in the wide box (``ParamSpace.project``).
        """
        return self._masked_iteration(state, lambda z: self.normal(z, wins),
                                      lambda z: self.half_cost(z, wins), prior, mask,
                                      valid, wide=True)

    def _masked_iteration(self, state, normal, cost, prior, mask, valid=None, wide=False):
        prior = self.belief(prior)
        lower, upper = (self.fit_lower, self.fit_upper) if wide else (self.lower, self.upper)

        def project(z):
            return self.space.project(z, wide)

        if mask is None:
            return solvers.lm_iteration(normal, cost, state, lower, upper, prior,
                                        project=project,
                                        valid=valid,
                                        active=(functools.partial(self.space.held, wide=True),
                                                self.space.rows) if wide else None,
                                        repair=self._repair if wide else None)
        idx = np.flatnonzero(mask)
        full = state.z.copy()

        def expand(zs):
            z = full.copy()
            z[idx] = zs
            return z

        def sub_normal(zs):
            hess, grad, c = normal(expand(zs))[:3]
            return hess[np.ix_(idx, idx)], grad[idx], c

        def held(zs, step):
            full_step = np.zeros(full.size)
            full_step[idx] = step
            return self.space.held(expand(zs), full_step, wide=wide)

        def rows(zs, keep):
            a, b = self.space.rows(expand(zs), keep)
            return a[:, idx], b

        sub = state._replace(z=state.z[idx])
        # the constraints that hold a step (a slack length at its bound, above all) are
        # kept by the step itself: clipped afterwards, it turns into one that does not
        # lower the objective, and the fit stops there
        out = solvers.lm_iteration(sub_normal, lambda zs: cost(expand(zs)), sub,
                                   lower[idx], upper[idx],
                                   posterior.conditional(prior, idx, state.z),
                                   project=lambda zs: project(expand(zs))[idx],
                                   valid=None if valid is None else
                                   lambda zs: valid(expand(zs)),
                                   active=(held, rows))
        return out._replace(z=expand(out.z))

    def _repair(self, z, hess):
        """
        Move z (numpy) back above the inertia floor along weakly determined directions.

        Fits move freely along weakly determined directions (a first moment along the
        hinge axis, for one), which can take a segment's inertia about its centre of mass
        out of the physical set while the data hardly mind.  A segment whose smallest
        principal moment is below ``INERTIA_FLOOR`` of the template's is moved along
        (hess)^-1 grad(moment), the direction that raises it at the least increase of the
        quadratic model ``hess`` (data + prior), to twice the floor.  Only segment
        coordinates move: through the muscles that direction would follow the strength
        scale, which a session without exo torque leaves undetermined.
        """
        free = self._segment_coordinates
        lower, upper = self.space.wide_lower, self.space.wide_upper
        for _ in range(REPAIR_ROUNDS):
            if free.size == 0:
                break
            zz = jnp.asarray(z, dtype=jnp.float64)
            low = self._lowest_moments(np.asarray(self.theta_of(zz)))
            if not low:
                break
            k_i, moment, axis, floor = min(low, key=lambda x: x[1] / x[3])
            # d(v' I v)/d(six) at the eigenvector v, through d(six)/dz
            weights = np.array([axis[0] ** 2, axis[1] ** 2, axis[2] ** 2,
                                2 * axis[0] * axis[1], 2 * axis[0] * axis[2],
                                2 * axis[1] * axis[2]])
            gradient = weights @ np.asarray(self._theta_jacobian(zz))[list(k_i)]
            direction = np.zeros_like(gradient)
            try:
                direction[free] = np.linalg.solve(hess[np.ix_(free, free)], gradient[free])
            except np.linalg.LinAlgError:
                break
            rise = gradient @ direction
            if not rise > 0:
                break
            moved = z + (2.0 * floor - moment) / rise * direction
            # a coordinate the move takes past its bound stays there; the next round moves
            # the others (otherwise the projection undoes the move, round after round)
            free = free[(moved[free] >= lower[free]) & (moved[free] <= upper[free])]
            z = self.space.project(moved, wide=True)
        return z

    def _principal_moments(self, theta):
        """Principal moments [S, 3] (kg m^2, ascending) and axes [S, 3, 3] per segment."""
        six = np.reshape([theta[list(k_i)] for _, _, k_i in self.space.segments], (-1, 6))
        return np.linalg.eigh(np.asarray(skeleton_inertia_matrix(six)))

    def _lowest_moments(self, theta):
        """Segments below their inertia floor: (theta indices, moment (kg m^2), axis, floor)."""
        moments, axes = self._principal_moments(theta)
        return [(k_i, float(m[0]), v[:, 0], floor)
                for (_, _, k_i), m, v, floor in zip(self.space.segments, moments, axes,
                                                    self._inertia_floors)
                if m[0] < floor]

    def fit(self, z0, wins, prior=None, iterations=None, tolerance=None, callback=None,
            valid=None):
        """
        Levenberg-Marquardt on the shooting residual from z0; returns (z, objectives).

        ``valid(z)`` (optional) refuses trial points (see ``lm_step``).
        """
        iterations = iterations or self.config.max_iterations
        tolerance = self.config.tolerance if tolerance is None else tolerance
        state = self.lm_init(z0, wins, prior)
        costs = [state.cost]
        for _ in range(iterations):
            before = state.z
            state = self.lm_step(state, wins, prior, valid=valid)
            costs.append(state.cost)
            if callback is not None:
                callback(state)
            if not state.accepted:
                break
            if costs[-2] - costs[-1] <= tolerance * max(costs[-2], 1e-300):
                break
            if np.max(np.abs(state.z - before)) < STEP_TOLERANCE:
                break
        return np.asarray(state.z), costs

    def adam_fit(self, z0, win, steps, prior=None, learning_rate=1e-2, callback=None):
        """Run the Diff-MSM baseline: Adam on the same objective (one window)."""
        state = solvers.adam_init(jnp.asarray(z0, dtype=jnp.float64), learning_rate)
        costs = []
        lower, upper = jnp.asarray(self.lower), jnp.asarray(self.upper)
        for _ in range(steps):
            state = self._adam(state, lower, upper, win, jnp.asarray(self.belief(prior).mean),
                               learning_rate=learning_rate)
            costs.append(float(state.cost))
            if callback is not None:
                callback(state)
        return np.asarray(state.z), costs

    def equation_fit(self, z0, wins, prior=None, iterations=EQUATION_ITERATIONS):
        """LM on the equation error (inverse dynamics from smoothed derivatives)."""
        wins = _as_list(wins)
        accs = [decompose.smoothed_acceleration(w) for w in wins]

        def normal(z):
            zz = jnp.asarray(z, dtype=jnp.float64)
            parts = [self._eq_normal(zz, w, a) for w, a in zip(wins, accs)]
            return (sum(np.asarray(p[0]) for p in parts), sum(np.asarray(p[1]) for p in parts),
                    sum(float(p[2]) for p in parts))

        def cost(z):
            zz = jnp.asarray(z, dtype=jnp.float64)
            return sum(float(self._eq_cost(zz, w, a)) for w, a in zip(wins, accs))

        prior = self.belief(prior)
        state = solvers.lm_init(cost, z0, prior)
        for _ in range(iterations):
            state = self._masked_iteration(state, normal, cost, prior, None)
            if not state.accepted:
                break
        return np.asarray(state.z)

    def corrected_fit(self, z0, wins, density, lowpass, prior=None, variance=None):
        """
        Raw EMG: the muscle parameters by the corrected equation-error fit (``corrected``).

        ``density`` is the envelope noise S0 per muscle (1/Hz), ``lowpass`` the envelope
        low-pass (Hz); ``prior`` defaults to ``corrected_prior``; ``variance`` (the
        activations' relative variance, ``corrected_variance`` at z0) is computed when not
        given.  The start is found on
        every ``corrected.COARSE``-th window: a coordinate scan of the plain fit's objective,
        the ramped rounds and the escape (``_corrected_escape``); then ``corrected.FINE``
        rounds on every window.  Returns (z, objective after each fine round); the rest of z
        stays at z0.
        """
        wins = _as_list(wins)
        accs = [decompose.smoothed_acceleration(w) for w in wins]
        density = jnp.asarray(density, dtype=jnp.float64)
        if variance is None:
            variance = self.corrected_variance(z0, wins, density, lowpass)
        mask = self.muscle_mask()
        prior = self.corrected_prior() if prior is None else self.belief(prior)
        coarse = (wins[::corrected.COARSE], accs[::corrected.COARSE])
        z = self._corrected_scan(np.asarray(z0, dtype=float), *coarse, density, prior, mask)
        z, _ = self._corrected_rounds(z, *coarse, density, variance, corrected.RAMP, prior,
                                      mask)
        z = self._corrected_escape(z, *coarse, density, variance, prior, mask)
        return self._corrected_rounds(z, wins, accs, density, variance, corrected.FINE,
                                      prior, mask)

    def muscle_mask(self):
        """Return the coordinates of z that belong to the muscles [P] (bool)."""
        return self.space.mask(lambda e: e.section == 'muscles')

    def corrected_variance(self, z, wins, density, lowpass):
        """Relative variance of each muscle's activation under the envelope noise, at z."""
        return corrected.activation_variance(self.model_at(jnp.asarray(z)), _as_list(wins),
                                             jnp.asarray(density, dtype=jnp.float64),
                                             lowpass)

    def corrected_normal(self, z, wins, density, correction):
        """
        (Gauss-Newton Hessian, gradient) of Q summed over windows at z, whitened at z.

        ``correction`` is c per muscle (``corrected``: s^2 / (1 + s^2)); no prior term.
        """
        wins = _as_list(wins)
        _, normal = self._corrected_objective(
            z, wins, [decompose.smoothed_acceleration(w) for w in wins],
            jnp.asarray(density, dtype=jnp.float64), jnp.asarray(correction))
        hess, grad, _ = normal(z)
        return hess, grad

    def compile_corrected(self, win, density, lowpass):
        """Compile the corrected fit's jitted functions for windows shaped like ``win``."""
        z = np.zeros(self.space.size)
        density = jnp.asarray(density, dtype=jnp.float64)
        corrected.activation_variance(self.model_at(jnp.asarray(z)), [win], density, lowpass)
        objective, normal = self._corrected_objective(
            z, [win], [decompose.smoothed_acceleration(win)], density,
            jnp.zeros(density.shape))
        objective(z)
        normal(z)

    def corrected_prior(self):
        """
        Return the corrected fit's prior: the template's, lengths at ``length_prior``.

        The template prior (``prior_std`` in z) leaves a fibre length free to a factor of
        e and a slack length to 10-16 % (elbow); on raw EMG the triceps' lengths are weakly
        determined (a Cramer-Rao 1-sigma of 10-32 % over 15 minutes) and a fit walks them
        to their bounds.  ``length_prior`` holds each length to that relative 1-sigma about
        the template (``ParamSpace.length_std``): the spread expected of a scaled template.
        """
        lengths = self.space.length_std(self.config.length_prior)
        std = np.where(np.isnan(lengths), self.config.prior_std, lengths)
        return posterior.Belief(np.zeros(self.space.size), np.diag(1.0 / std ** 2))

    def _corrected_objective(self, z_whiten, wins, accs, density, c, prior=None):
        """Q (plus the prior's term, if given) as a numpy callable, whitened at z_whiten."""
        zz = jnp.asarray(z_whiten)
        terms = [(w, a, frame.corrected_whitening(self.frame, zz, w, a, density))
                 for w, a in zip(wins, accs)]

        def objective(z):
            z_try = jnp.asarray(z, dtype=jnp.float64)
            data = sum(float(frame.corrected_cost(self.frame, z_try, *t, c)) for t in terms)
            return data if prior is None else data + posterior.terms(prior, z)[2]

        def normal(z):
            z_try = jnp.asarray(z, dtype=jnp.float64)
            parts = [frame.corrected_normal(self.frame, z_try, *t, c) for t in terms]
            return tuple(sum(np.asarray(p[i]) for p in parts) for i in range(3))

        return objective, normal

    def _corrected_scan(self, z0, wins, accs, density, prior, mask):
        """Scan the plain weighted equation error (plus prior) coordinate-wise from z0."""
        objective, _ = self._corrected_objective(z0, wins, accs, density,
                                                 jnp.zeros(density.shape), prior)
        slack = {k for k, *_ in self.space.tendons}
        grids = [(k, np.linspace(self.lower[k], self.upper[k], corrected.SCAN_SLACK_POINTS
                                 if k in slack else corrected.SCAN_POINTS))
                 for k in np.flatnonzero(mask)]
        return corrected.coordinate_scan(objective, z0, grids, self.space.project)[0]

    def _corrected_rounds(self, z, wins, accs, density, variance, ramp, prior, mask):
        """LM rounds of Q with the correction times each share of ``ramp``; (z, objectives)."""
        objectives = []
        for share in ramp:
            c = jnp.asarray(share * variance / (1.0 + variance))
            cost, normal = self._corrected_objective(z, wins, accs, density, c)
            state, rejected = solvers.lm_init(cost, z, prior), 0
            for _ in range(corrected.ITERATIONS):
                state = self._masked_iteration(state, normal, cost, prior, mask)
                rejected = 0 if state.accepted else rejected + 1
                if rejected >= corrected.REJECTED:
                    break
            z = np.asarray(state.z)
            objectives.append(float(state.cost))
        return z, objectives

    def _corrected_escape(self, z, wins, accs, density, variance, prior, mask):
        """
        Put each muscle back at the template in turn, fit again, keep what lowers Q.

        A wrong valley holds a muscle's three parameters together (the triceps' lateral
        head at twice its fibre length, its slack length at the bound and its strength
        70 % high, on two 15-minute sessions), where no step of one coordinate or of LM
        leads out; from the template's values for that muscle, with the others as fitted,
        the fit finds the truth's valley.  Q is compared whitened at the fit it starts from.
        """
        c = jnp.asarray(variance / (1.0 + variance))
        objective, _ = self._corrected_objective(z, wins, accs, density, c, prior)
        best = objective(z)
        names = dict.fromkeys(e.name for e in self.space.entries if e.section == 'muscles')
        for name in names:
            muscle = self.space.mask(lambda e: e.section == 'muscles' and e.name == name)
            trial = self.space.project(np.where(muscle, 0.0, z))
            trial, _ = self._corrected_rounds(trial, wins, accs, density, variance, (1.0,),
                                              prior, mask)
            value = objective(trial)
            if value < best:
                z, best = trial, value
        return z

    def solve(self, z0, wins, prior=None, iterations=None, restarts=4,
              noise_level=NOISE_LEVEL, bone_starts=BONE_STARTS, escapes=ESCAPES):
        """
        Multi-start LM on the shooting residual; returns (z, objectives of the kept run).

        Starts, in order: the robust start from z0; z0 itself; ``restarts`` robust starts
        from z0 with its muscle coordinates jittered; then starts aimed at a wrong bone
        guess (``bone_starts``, pairs of ('first_moments', factor) scaling every segment's
        m c, whose error wrong basins absorb in passive muscle force, or ('jitter', std)
        jittering every coordinate); the jitters use fixed seeds.  If none is at the noise
        level, the best fit's first moments are scaled by each of ``escapes`` and fitted
        again.  It stops at the first fit whose mean squared residual (sigma_q units) is at
        most ``noise_level``, else keeps the lowest objective.
        """
        wins = _as_list(wins)
        best = None

        def converged(start):
            nonlocal best
            z, costs = self.fit(start, wins, prior, iterations)
            if not (np.all(np.isfinite(z)) and np.isfinite(costs[-1])):
                return False
            if best is None or costs[-1] < best[0]:
                best = (costs[-1], z, costs)
            return self.cost(z, wins) <= noise_level

        for start in self._starts(np.asarray(z0, dtype=float), wins, prior, restarts,
                                  bone_starts):
            if converged(start):
                return best[1], best[2]
        if best is None:
            return np.asarray(z0, dtype=float), [float('nan')]
        # a valley where passive muscle force stands in for a wrong gravity moment: kick the
        # best fit's first moments and fit again
        valley = best[1]
        for factor in escapes:
            if converged(self.space.scale_first_moments(valley, factor)):
                break
        return best[1], best[2]

    def _starts(self, z0, wins, prior, restarts, bone_starts):
        """Generate the starts of ``solve`` lazily (each robust start costs seconds)."""
        yield self.initialise(z0, wins, prior)
        yield z0
        rng = np.random.default_rng(0)
        for _ in range(restarts):
            yield self.initialise(self.jitter_muscles(z0, rng), wins, prior)
        if not self.space.segments:
            return
        rng = np.random.default_rng(1)
        for kind, value in bone_starts:
            if kind == 'first_moments':
                base = self.space.scale_first_moments(z0, value)
            else:
                base = self.space.project(z0 + rng.normal(0.0, value, z0.shape))
            yield self.initialise(base, wins, prior)

    def jitter_muscles(self, z, rng, std=MUSCLE_JITTER):
        """Return z (numpy) with its muscle coordinates jittered by N(0, std^2), projected."""
        muscles = self.muscle_mask()
        return self.space.project(np.where(muscles, z + rng.normal(0.0, std, z.shape), z))

    def initialise(self, z0, wins, prior=None, iterations=EQUATION_ITERATIONS):
        """
        Robust start on the equation error.

        Candidates: z0 polished on the equation error, and the curve decomposition polished
        on the equation error, then swept over the muscles and polished again while that
        lowers the equation error (at most ``SWEEPS`` times); the lower equation
        error wins (wrong basins fit the equation of motion visibly worse than the right one).
        ``iterations`` bounds each polish.
        """
        wins = _as_list(wins)
        accs = [decompose.smoothed_acceleration(w) for w in wins]

        def eq_cost(z):
            return sum(float(self._eq_cost(jnp.asarray(z), w, a)) for w, a in zip(wins, accs))

        shapes = self.space.mask(lambda e: e.field == 'tendon_slack_length').any()
        candidates = [self.equation_fit(z0, wins, prior, iterations=iterations)]
        if shapes:
            z = self.equation_fit(decompose.global_start(self, z0, wins), wins, prior,
                                  iterations=iterations)
            cost = eq_cost(z)
            for _ in range(SWEEPS):
                swept = self.equation_fit(decompose.sweep_muscles(self, z, wins), wins,
                                          prior, iterations=iterations)
                swept_cost = eq_cost(swept)
                if not swept_cost < cost:
                    break
                improved = swept_cost < 0.99 * cost
                z, cost = swept, swept_cost
                if not improved:
                    break
            candidates.append(z)
        best = None
        for z in candidates:
            cost = eq_cost(z)
            if np.isfinite(cost) and (best is None or cost < best[0]):
                best = (cost, z)
        if best is None:
            return np.asarray(z0, dtype=float)
        return best[1]
