"""What the identifier carries between updates (``identify.posterior``)."""

import dataclasses

from diffmsm_ros import settings
from diffmsm_ros.identify import posterior
from diffmsm_ros.identify.online import OnlineIdentifier
import numpy as np
import pytest

SEEDS = range(5)


def chunks(rng, count, rows, size, truth, noise):
    """Linear-Gaussian data y = A z + e, in ``count`` chunks of ``rows`` rows."""
    out = []
    for _ in range(count):
        a = rng.normal(size=(rows, size))
        out.append((a, a @ truth + rng.normal(0.0, noise, rows)))
    return out


def fit(belief, data):
    """Least squares on ``data`` with the belief as prior: (z, the belief after the data)."""
    hess = sum(a.T @ a for a, _ in data)
    rhs = belief.info @ belief.mean + sum(a.T @ y for a, y in data)
    info = belief.info + hess
    return np.linalg.solve(info, rhs), posterior.Belief(np.linalg.solve(info, rhs), info)


@pytest.mark.parametrize('seed', SEEDS)
def test_carried_belief_with_no_drift_is_the_batch_fit(seed):
    """Absorbing chunk after chunk (linearised anywhere) and fitting the newest = batch."""
    rng = np.random.default_rng(seed)
    size = 6
    truth = rng.normal(size=size)
    data = chunks(rng, 12, 20, size, truth, 0.3)
    prior = posterior.template(size, 2.0)
    batch, _ = fit(prior, data)
    belief = prior
    for a, y in data[:-3]:
        z_lin = rng.normal(size=size)         # linear data: the point does not matter
        belief = posterior.widen(
            posterior.absorb(belief, a.T @ a, a.T @ (a @ z_lin - y), z_lin), 0.0, 60.0)
    recursive, after = fit(belief, data[-3:])
    np.testing.assert_allclose(recursive, batch, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(after.std(), fit(prior, data)[1].std(), rtol=1e-9)


@pytest.mark.parametrize('seed', SEEDS)
def test_drift_follows_a_step_change(seed):
    """A strength drops 20 % halfway: with drift the estimate follows, without it lags."""
    rng = np.random.default_rng(seed)
    size, minutes = 2, 20
    seconds = 10.0                             # per chunk
    final = {}
    for drift in (0.0, 0.05):                  # normalised units per sqrt(min)
        belief = posterior.template(size, 1.0)
        estimates = []
        for k in range(int(minutes * 60 / seconds)):
            truth = np.array([0.0 if k * seconds < minutes * 30 else -0.2, 0.1])
            (a, y), = chunks(rng, 1, 5, size, truth, 0.1)
            z, _ = fit(belief, [(a, y)])
            belief = posterior.widen(posterior.absorb(belief, a.T @ a, a.T @ (a @ z - y), z),
                                     np.array([drift, 0.0]), seconds)
            estimates.append(z[0])
        final[drift] = np.array(estimates)
    late = slice(-20, None)                    # the last 200 s
    assert np.max(np.abs(final[0.05][late] + 0.2)) < 0.06, final[0.05][late]
    assert np.mean(final[0.0][late]) > -0.14       # without drift: half way at best


def test_drift_widens_only_what_may_drift():
    belief = posterior.template(3, 0.1)
    wide = posterior.widen(belief, np.array([0.02, 0.0, 0.0]), 240.0)
    np.testing.assert_allclose(wide.std(), [np.sqrt(0.01 + 0.02 ** 2 * 4), 0.1, 0.1])


def test_a_belief_that_is_not_usable_is_rolled_back(elbow):
    """Non-finite normal equations never reach the carried belief."""
    values = dict(settings.defaults(), **{'emg.sample_rate': 500.0})
    config = dataclasses.replace(settings.identify_config(values), window=3.0, holdout=0.5)
    ident = OnlineIdentifier(elbow, config)
    from diffmsm_ros.identify.online import _dummy_window
    win = _dummy_window(elbow.model, ident.fit_steps, ident.history, ident.h)
    good = ident.arrival
    ident._absorb(win)
    assert ident.absorbed == 1 and posterior.usable(ident.arrival)
    assert np.all(ident.arrival.std() < good.std() + 1e-12)
    carried = ident.arrival
    broken = dataclasses.replace(win, tau_exo=np.full_like(np.asarray(win.tau_exo), np.inf))
    ident._absorb(broken)
    assert ident.belief_rollbacks == 1 and ident.absorbed == 1
    np.testing.assert_array_equal(ident.arrival.info, carried.info)
    assert not posterior.usable(posterior.Belief(np.full(2, np.nan), np.eye(2)))
    assert not posterior.usable(posterior.Belief(np.zeros(2), -np.eye(2)))


def test_chunks_lie_end_to_end_and_the_oldest_is_absorbed(elbow):
    """With memory the fitted chunks abut; one leaves into the belief per chunk of data."""
    config = dataclasses.replace(settings.identify_config(settings.defaults()), window=3.5,
                                 chunk=1.5, holdout=0.5, warmup=0.2, iterations=1)
    ident = OnlineIdentifier(elbow, config)
    h = ident.h
    spans, absorbed = [], []
    for k in range(int(8.0 / h)):
        t = k * h
        ident.add_encoders(t, [1.2 + 0.3 * np.sin(3.0 * t)], [0.9 * np.cos(3.0 * t)], [0.0])
        ident.add_excitations([t], [np.full(6, 0.1)])
        if k % 100 == 99 and ident.ready():
            fit, hold = ident.windows()
            weights = [np.asarray(w.weight) for w in fit]
            for newer, older in zip(fit, fit[1:]):
                # the newer chunk's first weighted sample follows the older's last one
                first = int(np.argmax(np.asarray(newer.weight) > 0))
                last = len(older.weight) - 1 - int(np.argmax(np.asarray(older.weight)[::-1] > 0))
                assert first >= ident.warmup_steps
                assert float(older.q[last, 0]) == float(newer.q[first - 1, 0])
            spans.append(sum(float(w.sum()) for w in weights) * h)
            absorbed.append(ident.absorbed)
    # once the window is full the fitted data cover it, and at most one more chunk
    full = spans[len(spans) // 2:]
    assert min(full) >= 3.0 - 1e-9 and max(full) <= 4.0 + 1e-9, spans
    # 8 s of data, 0.2 s warm-up and 0.5 s hold-out: the rest beyond the window absorbed
    assert absorbed[-1] == int((8.0 - 0.2 - 0.5 - 3.0) / 1.0), absorbed
    assert absorbed == sorted(absorbed)


@pytest.mark.parametrize('seed', SEEDS)
def test_cap_keeps_data_within_the_information_allowed(seed):
    """The capped data fit within the information, touching it; data inside stay whole."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, 6, 6))
    hess, info = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    c = posterior.cap(hess, info)
    assert 0 < c <= 1
    slack = np.linalg.eigvalsh(info - c * hess)
    assert slack.min() >= -1e-8 * np.abs(slack).max()
    if c < 1:
        assert np.linalg.eigvalsh(info - 1.001 * c * hess).min() < 0
    assert posterior.cap(0.5 * info, info) == 1.0
    assert posterior.cap(np.full((6, 6), np.nan), info) == 1.0


@pytest.mark.parametrize('seed', SEEDS)
def test_consistency_statistic_has_the_mean_and_spread_it_claims(seed):
    """A right belief and data with the noise they claim: the statistic's moments hold."""
    rng = np.random.default_rng(seed)
    size, draws = 5, 4000
    truth = rng.normal(size=size)
    root = rng.normal(size=(size, size)) + 2.0 * np.eye(size)
    info = root @ root.T
    cov = np.linalg.inv(info)
    a = rng.normal(size=(8, size)) * 0.7      # 8 rows: information of every size
    stats, claims, chances = [], set(), []
    for _ in range(draws):
        belief = posterior.Belief(rng.multivariate_normal(truth, cov), info)
        y = a @ truth + rng.normal(size=8)
        z_lin = rng.normal(size=size)
        check = posterior.consistency(belief, a.T @ a, a.T @ (a @ z_lin - y), z_lin)
        stats.append(check.statistic)
        chances.append(check.p_value())
        claims.add((round(check.expected, 9), round(check.spread, 9)))
        assert check.disagrees() == (check.p_value() < posterior.LET_GO_P)
    (expected, spread), = claims               # they depend on the informations only
    assert abs(np.mean(stats) - expected) < 4 * spread / np.sqrt(draws)
    assert abs(np.std(stats) / spread - 1.0) < 0.1
    # the chance it claims is about right where it can be counted (5 % and 1 % of draws:
    # binomial 1-sigma 0.35 and 0.16 points) ...
    chances = np.asarray(chances)
    assert 0.035 < np.mean(chances < 0.05) < 0.065, np.mean(chances < 0.05)
    assert 0.004 < np.mean(chances < 0.01) < 0.016, np.mean(chances < 0.01)
    # ... and a right belief is let go of at most a few times in 4000 (0.4 expected)
    assert np.sum(chances < posterior.LET_GO_P) <= 3


@pytest.mark.parametrize('seed', SEEDS)
def test_a_belief_far_from_the_data_is_let_go_of(seed):
    """A belief 20 of its 1-sigma off: widened along the shift, the next fit near truth."""
    rng = np.random.default_rng(seed)
    size = 4
    truth = rng.normal(size=size)
    info = np.eye(size) * 1e4                  # 1-sigma 0.01
    belief = posterior.Belief(truth + 0.2 * rng.choice([-1.0, 1.0], size), info)
    (a, y), = chunks(rng, 1, 400, size, truth, 0.1)   # data's own 1-sigma about 0.005
    hess, grad = a.T @ a / 0.01, a.T @ (a @ truth - y) / 0.01
    check = posterior.consistency(belief, hess, grad, truth)
    assert check.disagrees(), check
    wide = posterior.let_go(belief, check)
    before, _ = fit(belief, [(a / 0.1, y / 0.1)])
    after, _ = fit(wide, [(a / 0.1, y / 0.1)])
    assert np.max(np.abs(after - truth)) < 0.25 * np.max(np.abs(before - truth))
    assert np.max(np.abs(after - truth)) < 0.03
    # widened along the shift only: across it the belief keeps what it knew
    across = np.linalg.svd(check.shift[None, :])[2][1:]
    np.testing.assert_allclose(across @ np.linalg.inv(wide.info) @ across.T,
                               across @ np.linalg.inv(info) @ across.T, rtol=1e-9, atol=1e-12)
    # and the shift is now at its expected distance
    v = check.shift
    assert v @ wide.info @ v == pytest.approx(check.expected, rel=1e-9)


def test_a_belief_the_data_agree_with_is_kept():
    """A statistic at or below its expected value leaves the belief as it was."""
    belief = posterior.template(3, 0.1)
    check = posterior.Consistency(1.0, 2.0, 1.0, np.array([0.01, 0.0, 0.0]))
    assert not check.disagrees() and posterior.let_go(belief, check) is belief
    broken = posterior.Consistency(np.nan, 2.0, 1.0, np.full(3, np.nan))
    assert not broken.disagrees() and posterior.let_go(belief, broken) is belief


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_walk_covariance_is_the_spread_a_drift_adds_about_the_newest_value(seed):
    # a linear fit of constant parameters to blocks of data over which the first one
    # walks, with a belief about where they were before: across many sessions the
    # estimate's error about the newest value has the noise's covariance plus the walk's
    # (the other two coordinates too, through blocks that mix them unevenly)
    from diffmsm_ros.identify import uncertainty
    rng = np.random.default_rng(seed)
    size, n_blocks, rows, step = 3, 12, 4, 1.0
    rate = np.array([0.05, 0.0, 0.0])            # variance per s
    rows_of = [rng.normal(size=(rows, size)) * rng.uniform(0.2, 2.0, size)
               for _ in range(n_blocks)]
    hessians = [a.T @ a for a in rows_of]
    prior_info = np.diag([4.0, 2.0, 1.0])
    prior_age = (n_blocks + 1) * step              # the belief is about the start
    ages = np.array([(n_blocks - k) * step for k in range(n_blocks)])  # oldest first
    bread = np.linalg.inv(prior_info + sum(hessians))
    predicted = bread + uncertainty.walk_covariance(
        bread, list(zip(hessians, ages)) + [(prior_info, prior_age)], rate)
    errors = []
    for _ in range(4000):
        # the walk backwards from the newest value: theta(age) = newest - walk(age)
        steps = rng.normal(size=(n_blocks + 1, size)) * np.sqrt(rate * step)
        newest = rng.normal(size=size)
        course = newest - np.cumsum(steps, axis=0)  # at ages step, 2 step, ...
        theta_prior = course[-1]
        mean = theta_prior + np.linalg.cholesky(np.linalg.inv(prior_info)) @ rng.normal(
            size=size)
        grad = prior_info @ mean
        for k, a in enumerate(rows_of):
            y = a @ course[n_blocks - 1 - k] + rng.normal(size=rows)
            grad = grad + a.T @ y
        errors.append(bread @ grad - newest)
    observed = np.cov(np.asarray(errors).T)
    # 4000 draws: a variance within about 5 % (1 sigma)
    np.testing.assert_allclose(np.diag(observed), np.diag(predicted), rtol=0.15)
    # the noise's covariance alone is far too narrow for the walking coordinate
    assert observed[0, 0] > 3.0 * bread[0, 0]


def _ar1(rng, n, phi):
    """Residuals correlated in time: an AR(1) series of unit innovations."""
    e = rng.normal(size=n)
    out = np.empty(n)
    out[0] = e[0] / np.sqrt(1.0 - phi ** 2)
    for k in range(1, n):
        out[k] = phi * out[k - 1] + e[k]
    return out


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_spread_carried_through_absorbed_chunks_is_the_estimates_spread(seed):
    # residuals correlated in time, absorbed chunk after chunk with their score spread
    # (blocks of 50 rows): across many sessions the final mean scatters as the carried
    # spread says, while the Gauss-Newton covariance (the information's inverse) is far
    # too narrow, and an absorb without scores keeps that narrow one
    rng = np.random.default_rng(seed)
    size, n_chunks, rows, block = 2, 8, 400, 50
    t = np.arange(n_chunks * rows) / rows
    x = np.stack([np.ones_like(t), np.sin(2 * np.pi * t)], axis=1)
    truth = np.array([1.0, 0.5])
    means, spreads, narrow = [], [], []
    for _ in range(300):
        y = x @ truth + _ar1(rng, t.size, 0.9)
        belief = plain = posterior.template(size, 100.0)
        for c in range(n_chunks):
            a, b = x[c * rows:(c + 1) * rows], y[c * rows:(c + 1) * rows]
            z_lin = belief.mean
            grad = a.T @ (a @ z_lin - b)
            g = (a * (a @ z_lin - b)[:, None]).reshape(-1, block, size).sum(axis=1)
            belief = posterior.absorb(belief, a.T @ a, grad, z_lin, g.T @ g)
            plain = posterior.absorb(plain, a.T @ a, a.T @ (a @ plain.mean - b), plain.mean)
        np.testing.assert_allclose(belief.mean, plain.mean, rtol=1e-9, atol=1e-12)
        assert plain.spread is None
        means.append(belief.mean)
        spreads.append(np.sqrt(np.diag(posterior.spread(belief))))
        narrow.append(belief.std())
    scatter = np.std(means, axis=0)
    np.testing.assert_allclose(np.mean(spreads, axis=0), scatter, rtol=0.25)
    assert np.all(np.mean(narrow, axis=0) < 0.4 * scatter)


def test_white_data_do_not_narrow_the_spread_and_drift_widens_it():
    # scores below the information (residuals whiter than claimed) leave the Gauss-Newton
    # spread; a walk adds to the carried spread as to the covariance; a let-go widens both
    belief = posterior.template(2, 1.0)
    hess = np.diag([100.0, 50.0])
    whiter = posterior.absorb(belief, hess, np.zeros(2), np.zeros(2), 0.1 * hess)
    np.testing.assert_allclose(posterior.spread(whiter), posterior.covariance(whiter),
                               rtol=1e-12)
    wider = posterior.absorb(belief, hess, np.zeros(2), np.zeros(2), 4.0 * hess)
    walked = posterior.widen(wider, np.array([0.1, 0.0]), 60.0)
    np.testing.assert_allclose(posterior.spread(walked) - posterior.spread(wider),
                               np.diag([0.01, 0.0]), atol=1e-15)
    # data that put the first coordinate 1 away, where the belief allows about 0.1
    check = posterior.consistency(walked, hess, hess @ (walked.mean - [1.0, 0.0]),
                                  walked.mean)
    assert check.disagrees()
    loose = posterior.let_go(walked, check)
    gain = posterior.covariance(loose) - posterior.covariance(walked)
    np.testing.assert_allclose(posterior.spread(loose) - posterior.spread(walked), gain,
                               atol=1e-12)
    assert gain[0, 0] > 0
