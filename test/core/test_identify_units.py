"""Pieces of the identifier: parameter space, buffers, solvers, uncertainty, online logic."""

from diffmsm_ros.identify import (params, posterior, published, residuals, solvers, strategy,
                                  uncertainty)
from diffmsm_ros.identify.buffers import GridBuffer
from diffmsm_ros.identify.config import FIRST_FIT
from diffmsm_ros.identify.online import _dummy_window, OnlineIdentifier
from diffmsm_ros.identify.problem import IdentifyConfig, INERTIA_FLOOR, NOISE_LEVEL, Problem
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def test_parameter_space_round_trip_and_coupled_coordinates(elbow):
    space = params.make_space(elbow.model, elbow.bounds)
    theta = params.values(elbow.model, space)
    np.testing.assert_allclose(np.asarray(space.to_z(theta)), 0.0, atol=1e-12)
    z = np.random.default_rng(0).normal(scale=0.2, size=space.size)
    np.testing.assert_allclose(np.asarray(space.to_z(space.from_z(z))), z, atol=1e-10)
    labels = space.labels()
    # moving only the optimal fibre length keeps the operating point L_ref
    k = labels.index('BIClong.optimal_fiber_length')
    j = labels.index('BIClong.tendon_slack_length')
    dz = np.zeros(space.size)
    dz[k] = 0.2
    moved = np.asarray(space.from_z(dz))
    lref = [t for t in space.tendons if t[0] == j][0][3]
    before = (lref - theta[j]) / theta[k]
    after = (lref - moved[j]) / moved[k]
    assert after == pytest.approx(before, rel=1e-12) and moved[j] != theta[j]
    # applying the values back gives the same model numbers
    model = params.apply(elbow.model, space, moved)
    assert float(model.muscles.optimal_fiber_length[3]) == pytest.approx(moved[k])


def test_every_slack_length_in_bounds_is_reachable_at_any_fibre_length(elbow):
    space = params.make_space(elbow.model, elbow.bounds)
    theta = params.values(elbow.model, space)
    labels = space.labels()
    for k, k_l0, _, _, lo, hi in space.tendons:
        l0_lo, l0_hi = elbow.bounds['muscles'][space.entries[k].name]['optimal_fiber_length']
        for l0 in (l0_lo, 0.6 * theta[k_l0], 1.7 * theta[k_l0], l0_hi):
            for slack in (lo, 0.5 * (lo + hi), hi):
                moved = theta.copy()
                moved[k_l0], moved[k] = l0, slack
                z = np.asarray(space.to_z(moved))
                assert space.wide_lower[k] - 1e-9 <= z[k] <= space.wide_upper[k] + 1e-9, \
                    labels[k]
                np.testing.assert_allclose(space.project(z, wide=True)[k], z[k], atol=1e-9)


def test_a_step_at_a_slack_bound_is_solved_along_the_bound(elbow):
    # LM at a slack length on its metre bound, with a step that would take it out: the
    # projection used to bend such steps into a rise the quadratic model could not see
    space = params.make_space(elbow.model, elbow.bounds)
    labels = space.labels()
    k = labels.index('TRIlat.tendon_slack_length')
    k_l0 = labels.index('TRIlat.optimal_fiber_length')
    j = [t[0] for t in space.tendons].index(k)
    z = np.zeros(space.size)
    z[k] = space.wide_upper[k]
    z = space.project(z, wide=True)            # slack length now at its lower metre bound
    rng = np.random.default_rng(0)
    a = rng.normal(size=(space.size, space.size))
    hess = a @ a.T + space.size * np.eye(space.size)
    grad = np.zeros(space.size)
    grad[k], grad[k_l0] = -1.0, -1.0            # downhill: shorter slack, longer fibres
    free = np.linalg.solve(hess, -grad)
    active = (lambda zz, step: space.held(zz, step, wide=True), space.rows)
    assert ('slack', j) in space.held(z, free, wide=True)
    step = solvers._damped_step(hess, grad, np.zeros(space.size), z, active)
    assert abs(step[k_l0]) > 1e-3              # the fibre length still moves
    for t in (1e-2, 1e-3):
        moved = z + t * step
        # the bound holds to first order: the projection's correction shrinks like t^2
        assert np.max(np.abs(space.project(moved, wide=True) - moved)) < 10 * t * t
    a_rows, _ = space.rows(z, {('slack', j)})
    np.testing.assert_allclose(a_rows @ step, 0.0, atol=1e-12)


def test_inertia_repair_brings_a_fit_back_to_a_physical_body(elbow):
    problem = Problem(elbow, IdentifyConfig(window=2.0, holdout=0.5))
    space = problem.space
    k_m, k_c, k_i = space.segments[0]
    z = np.zeros(space.size)
    z[k_c[2]] = 3.0      # first moment along the (nearly z) hinge axis: weakly determined
    assert problem.unphysical(z) == 'inertia not positive definite'
    # a quadratic model that determines everything but that first moment and the mass
    hess = 1e6 * np.eye(space.size)
    hess[k_c[2], k_c[2]] = hess[k_m, k_m] = 1.0
    repaired = problem._repair(z, hess)
    assert problem.unphysical(repaired) == ''
    moved = np.abs(repaired - z)
    assert moved[k_c[2]] + moved[k_m] > 100 * np.max(np.delete(moved, [k_c[2], k_m]))


def test_clipping_to_bounds_keeps_the_inertia_physical(elbow):
    """A 15 min raw-EMG session's forearm: physical, but its xz past the bound by 13 %."""
    import dataclasses
    from diffmsm_ros.files import modelfile
    from diffmsm_ros.model.skeleton import inertia_matrix
    fitted = np.array([[0.047819797, 0.0040842732, 0.15097761, 0.009657555, 0.026668072,
                        0.022216262]])
    sk = elbow.model.skeleton
    sf = dataclasses.replace(elbow, model=elbow.model.replace(
        skeleton=dataclasses.replace(sk, inertia=fitted)), identification={'warnings': []})

    def lowest(model):
        return np.linalg.eigvalsh(np.asarray(inertia_matrix(model.skeleton.inertia)))[0, 0]

    assert lowest(sf.model) > 0
    plain = published.clip_to_bounds(sf)
    assert lowest(plain.model) < 0      # clipping xz alone leaves no physical body
    with pytest.raises(modelfile.ModelFileError, match='positive definite'):
        modelfile.loads(modelfile.dumps(plain))
    kept = published.clip_to_bounds(sf, elbow.model)
    again = modelfile.loads(modelfile.dumps(kept))
    modelfile.check_bounds(again)
    floor = INERTIA_FLOOR * lowest(elbow.model)
    assert lowest(kept.model) == pytest.approx(floor, rel=1e-6)
    assert any('inertia of r_ulna_radius_hand moved toward the template' in w
               for w in kept.identification['warnings'])
    # the least mix: the diagonal barely moves
    assert np.allclose(kept.model.skeleton.inertia[0, :3], fitted[0, :3], rtol=0.05)


def test_barycentric_segment_coordinates_keep_physics(elbow):
    space = params.make_space(elbow.model, elbow.bounds)
    assert space.segments, 'mass, com and inertia together move in barycentric coordinates'
    k_m, k_c, k_i = space.segments[0]
    z = np.zeros(space.size)
    z[k_m] = np.log(1.2)           # 20 % heavier with the same first moment
    theta = np.asarray(space.from_z(z))
    ref = params.values(elbow.model, space)
    np.testing.assert_allclose(theta[k_m] * theta[list(k_c)], ref[k_m] * ref[list(k_c)])


def test_first_moment_scaling_changes_the_gravity_moment_only(elbow):
    space = params.make_space(elbow.model, elbow.bounds)
    k_m, k_c, k_i = space.segments[0]
    z = np.random.default_rng(3).normal(0.0, 0.05, space.size)
    scaled = space.scale_first_moments(z, 1.5)
    before, after = np.asarray(space.from_z(z)), np.asarray(space.from_z(scaled))
    np.testing.assert_allclose(after[k_m] * after[list(k_c)],
                               1.5 * before[k_m] * before[list(k_c)], rtol=1e-9)
    others = np.ones(space.size, dtype=bool)
    others[list(k_c)] = False
    np.testing.assert_allclose(scaled[others], space.project(z, wide=True)[others])


def test_grid_buffer_resamples_and_marks_gaps():
    buf = GridBuffer(capacity=50, width=1, h=0.01, max_gap=0.05)
    buf.reset(0.0)
    for t in np.arange(0.0, 0.2, 0.004):
        buf.push(t, [2.0 * t])
    values, ok = buf.get(1, 10)
    np.testing.assert_allclose(values[:, 0], 2.0 * 0.01 * np.arange(1, 11), atol=1e-12)
    assert ok.all()
    buf.push(0.4, [0.8])                       # a 0.2 s gap
    values, ok = buf.get(buf.newest - 5, 6)
    assert not ok[:-1].any() and ok[-1]
    assert buf.push(0.3, [0.0]) == -1          # older than the previous sample
    for t in np.arange(0.41, 3.0, 0.004):      # memory stays at its capacity
        buf.push(t, [1.0])
    assert buf.values.shape == (50, 1) and buf.newest - buf.oldest + 1 == 50


def test_lm_solves_a_nonlinear_least_squares_problem():
    target = np.array([1.5, -0.7])
    xs = np.linspace(0, 1, 30)

    def residual(z):
        return (jnp.exp(z[0] * xs) + jnp.sin(z[1] * xs)
                - np.exp(target[0] * xs) - np.sin(target[1] * xs))

    def normal(z):
        h, g, c, _ = solvers.normal_equations(residual, jnp.asarray(z))
        return np.asarray(h), np.asarray(g), float(c)

    def cost(z):
        r = residual(jnp.asarray(z))
        return float(0.5 * jnp.sum(r * r))

    state = solvers.lm_init(cost, np.zeros(2), posterior.template(2, 1e6))
    for _ in range(50):
        state = solvers.lm_iteration(normal, cost, state, -10 * np.ones(2), 10 * np.ones(2),
                                     posterior.template(2, 1e6))
        if not state.accepted:
            break
    np.testing.assert_allclose(state.z, target, atol=1e-6)


def test_lm_refuses_invalid_trial_points_only_from_a_valid_point():
    # minimum at z = 2, valid region z < 1: steps stop short, never cross
    def normal(z):
        return np.eye(1), np.asarray(z) - 2.0, 0.5 * float((z[0] - 2.0) ** 2)

    def cost(z):
        return 0.5 * float((z[0] - 2.0) ** 2)

    def valid(z):
        return z[0] < 1.0

    state = solvers.lm_start(np.zeros(1))
    for _ in range(30):
        state = solvers.lm_iteration(normal, cost, state, -10 * np.ones(1), 10 * np.ones(1),
                                     posterior.template(1, 1e6), valid=valid)
        assert valid(state.z)
        np.testing.assert_allclose(state.data_cost, cost(state.z))
    assert state.z[0] > 0.9
    # from an invalid point any step is allowed: it walks to the minimum
    state = solvers.lm_start(np.array([1.5]))
    for _ in range(30):
        state = solvers.lm_iteration(normal, cost, state, -10 * np.ones(1), 10 * np.ones(1),
                                     posterior.template(1, 1e6), valid=valid)
    np.testing.assert_allclose(state.z, [2.0], atol=1e-6)


def test_unphysical_parameters_are_named(elbow):
    problem = Problem(elbow, IdentifyConfig(window=2.0, holdout=0.5))
    space = problem.space
    z = np.zeros(space.size)
    assert problem.unphysical(z) == ''
    assert problem.unphysical(np.full(space.size, np.nan)) == 'non-finite parameters'
    for k, label in enumerate(space.labels()):
        if '.inertia.' in label:
            # the lower bound of a barycentric inertia coordinate leaves the tensor about
            # the centre of mass indefinite
            bad = z.copy()
            bad[k] = space.lower[k]
            assert problem.unphysical(bad) == 'inertia not positive definite', label


def test_weak_directions_and_strength_scale_are_reported(elbow):
    space = params.make_space(elbow.model, elbow.bounds)
    # information only along one shape parameter: everything else is weak
    hess = np.zeros((space.size, space.size))
    hess[1, 1] = 1e6
    analysis = uncertainty.analyse(space, np.zeros(space.size), hess, 1.0, 10_000, 1.0,
                                   external_torque=0.0)
    assert analysis.std_z[1] < 1e-2 < analysis.std_z[0]
    assert len(analysis.weak) == space.size - 1
    assert any('not identifiable' in w for w in analysis.warnings)


def _ar1(rng, n, rho):
    """AR(1) noise of unit variance (correlation time 1 / (1 - rho) samples)."""
    e = np.empty(n)
    e[0] = rng.standard_normal()
    for k in range(1, n):
        e[k] = rho * e[k - 1] + np.sqrt(1 - rho ** 2) * rng.standard_normal()
    return e


def test_block_scores_give_an_honest_spread_under_correlated_residuals():
    # a straight line fitted through time-correlated noise: Gauss-Newton's 1-sigma is
    # several times too small, the sandwich from 1 s blocks of segments is right
    n_seg, rows, block = 400, 5, 10
    t = np.linspace(0.0, 1.0, n_seg * rows)
    x = np.stack([np.ones_like(t), np.sin(2 * np.pi * t)], axis=1)
    rng = np.random.default_rng(0)
    estimates, narrow, wide = [], [], []
    for _ in range(150):
        y = x @ np.array([1.0, 0.5]) + _ar1(rng, t.size, 0.9)

        def segments(z, offset):
            return (jnp.asarray(x) @ z - jnp.asarray(y)).reshape(n_seg, rows)

        z0 = jnp.zeros(2)
        hess, grad, half, count, scores, blocks = residuals.shooting_normal_equations(
            segments, z0, 0, jnp.zeros(0), False, block)
        hess, grad = np.asarray(hess), np.asarray(grad)
        if not estimates:
            # the block scores are the blocks' shares of the gradient, spread as g g^T
            g = (x * (x @ np.zeros(2) - y)[:, None]).reshape(-1, block * rows, 2).sum(axis=1)
            np.testing.assert_allclose(np.asarray(scores), g.T @ g, rtol=1e-9)
            np.testing.assert_allclose(grad, g.sum(axis=0), rtol=1e-9)
            # and the blocks' shares of J^T J, in time order, add up to it
            rows_b = x.reshape(-1, block * rows, 2)
            np.testing.assert_allclose(np.asarray(blocks),
                                       np.einsum('bkp,bkq->bpq', rows_b, rows_b), rtol=1e-9)
            np.testing.assert_allclose(hess, x.T @ x, rtol=1e-9, atol=1e-9)
        beta = -np.linalg.solve(hess, grad)
        estimates.append(beta)
        r = x @ beta - y
        s2 = r @ r / (count - 2)
        g = (x * r[:, None]).reshape(-1, block * rows, 2).sum(axis=1)
        prior = np.eye(2) * 1e-12
        cov = np.linalg.inv(hess / s2 + prior)
        widen = uncertainty.sandwich_widening(cov, g.T @ g / s2 ** 2 + prior)
        narrow.append(np.sqrt(np.diag(cov)))
        wide.append(widen * np.sqrt(np.diag(cov)))
    spread = np.std(estimates, axis=0)
    assert np.all(np.mean(narrow, axis=0) < 0.4 * spread)
    np.testing.assert_allclose(np.mean(wide, axis=0), spread, rtol=0.3)


def test_raw_emg_models_warn_that_their_muscle_uncertainty_is_a_lower_bound(elbow):
    # profiled excitation gains (raw EMG) leave the envelope's error out of the 1-sigma
    space_size = params.make_space(elbow.model, elbow.bounds).size
    hess = 1e4 * np.eye(space_size)
    for noise, warned in ((0.0, False), (0.2, True)):
        problem = Problem(elbow, IdentifyConfig(window=2.0, holdout=0.5,
                                                excitation_noise=noise, excitation_terms=2))
        analysis = problem.analyse(np.zeros(space_size), hess, 1.0, 10_000,
                                   external_torque=1.0)
        assert any('lower bounds' in w for w in analysis.warnings) == warned
    # with the envelope noise measured, its information widens them instead
    win = _dummy_window(elbow.model, 1500, 200, elbow.model.timestep)
    analysis = problem.analyse(np.zeros(space_size), hess, 1.0, 10_000, external_torque=1.0,
                               wins=[win], envelope_noise=np.full(6, 1.3e-3))
    assert not any('lower bounds' in w for w in analysis.warnings)
    assert any('random error of the EMG envelope' in w for w in analysis.warnings)
    assert analysis.envelope_widening > 1.0


def test_online_identifier_resets_on_time_jumping_back(elbow):
    ident = OnlineIdentifier(elbow, IdentifyConfig(window=2.0, holdout=0.5, warmup=0.2))
    for k in range(300):
        t = 100.0 + k * 0.002
        ident.add_encoders(t, [1.0], [0.0], [0.0])
        ident.add_excitations([t], [np.full(6, 0.1)])
    assert ident.available()[1] > 100
    ident.add_encoders(90.0, [1.0], [0.0], [0.0])   # a bag restarted
    assert ident.resets == 1 and ident.available()[1] <= 1
    result = ident.update()
    assert not result.accepted and 'not enough data' in result.reason


@pytest.mark.parametrize('memory, window, chunk, wait', [
    (True, 4.0, 0.0, 3.5 + 0.5),       # the whole window (shorter than FIRST_FIT)
    (True, 20.0, 0.0, 10.25),          # one chunk of 10.25 s (longer than FIRST_FIT)
    (True, 20.0, 4.0, FIRST_FIT + 0.5),
    (False, 20.0, 4.0, 4.0),           # without memory robust starts rerun as chunks grow
])
def test_first_update_with_memory_waits_for_its_robust_start_data(
        elbow, memory, window, chunk, wait):
    """With memory the first update waits for FIRST_FIT s to fit (or the window)."""
    config = IdentifyConfig(window=window, chunk=chunk, holdout=0.5, warmup=0.2,
                            memory=memory)
    ident = OnlineIdentifier(elbow, config)
    h = elbow.model.timestep
    ready_at = None
    for k in range(int(round((wait + 2.0) / h))):
        ident.add_encoders(k * h, [1.0], [0.0], [0.0])
        ident.add_excitations([k * h], [np.full(6, 0.1)])
        if ready_at is None and ident.ready():
            ready_at = k * h
    # the data counted start once the EMG covers the activation history before them
    start = ident.history * h
    assert ready_at == pytest.approx(start + wait + config.warmup, abs=1.5 * h)


def test_online_identifier_refuses_invalid_candidates(elbow):
    ident = OnlineIdentifier(elbow, IdentifyConfig())
    z = np.zeros(ident.problem.space.size)
    assert ident._validity(z) == ''
    bad = z.copy()
    bad[0] = np.nan
    assert 'non-finite' in ident._validity(bad)
    far = z.copy()
    far[0] = ident.problem.space.upper[0] + 1.0
    assert 'bounds' in ident._validity(far)


class Traces:
    """Names of the functions JAX traces for jit while the context is open."""

    def __enter__(self):
        self.names = []
        jax.monitoring.register_event_duration_secs_listener(self._heard)
        return self

    def _heard(self, event, duration, **kwargs):
        if event == '/jax/core/compile/jaxpr_trace_duration':
            self.names.append(kwargs.get('fun_name'))

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._heard)


def test_online_window_grows_by_chunks_and_robust_starts_rerun(elbow):
    config = IdentifyConfig(window=3.5, chunk=1.5, holdout=0.5, warmup=0.2, iterations=1,
                            memory=False)
    ident = OnlineIdentifier(elbow, config)
    assert ident.chunks == 3
    ident.compile()
    rng = np.random.default_rng(0)
    seen, results = [], []
    with Traces() as traced:
        for k in range(int(4.2 / 0.002)):
            t = k * 0.002
            ident.add_encoders(t, [1.2 + 0.3 * np.sin(3.0 * t)], [0.9 * np.cos(3.0 * t)],
                               [0.0])
            ident.add_excitations([t], [0.1 + 0.02 * rng.random(6)])
            if k % 250 == 0 and ident.ready():
                fit, hold = ident.windows()
                for newer, older in zip(fit, fit[1:]):
                    # consecutive chunks: the older one's fitted samples end where the newer
                    # one's begin (its warm-up overlaps, weighted 0)
                    assert float(older.q[-1, 0]) == float(newer.q[ident.warmup_steps - 1, 0])
                seen.append(len(fit))
                results.append(ident.update())
    # compile() compiled what every update runs, on one window or three (robust starts,
    # retries, hold-out checks): no update traces a jitted function again
    assert traced.names == []
    counts = seen
    starts = [r.robust_start for r in results]
    assert counts[0] == 1 and counts[-1] == 3 and counts == sorted(counts)
    # each time more chunks arrive the robust start runs again, on all of them
    grew = [i for i in range(len(counts)) if i == 0 or counts[i] > counts[i - 1]]
    assert all(starts[i] for i in grew)
    # an accepted fit that stalled far above the noise level (this data is no elbow's) sits
    # in a wrong basin: the next update runs the robust start again, from jittered muscles
    wrong = [i for i, r in enumerate(results[:-1])
             if r.accepted and r.stalled and r.fit_cost > strategy.WRONG_BASIN * NOISE_LEVEL]
    assert any(counts[i + 1] == counts[i] for i in wrong)     # a retry, not a new chunk
    assert all(starts[i + 1] for i in wrong)
    # a robust start that lost on the hold-out is not run again at once on the same chunks
    lost = [i for i, r in enumerate(results[:-1]) if r.robust_start and
            r.reason == 'did not lower the hold-out error' and counts[i + 1] == counts[i]]
    assert not any(starts[i + 1] for i in lost)
    # a fit still descending is not judged by its residual: no retry after it
    descending = [i for i, r in enumerate(results[:-1])
                  if r.accepted and not r.stalled and counts[i + 1] == counts[i]]
    assert not any(starts[i + 1] for i in descending)
