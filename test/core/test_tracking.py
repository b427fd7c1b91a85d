"""The raw-EMG tracker (identify/tracking.py) on linear-Gaussian chunks with a known answer."""

from diffmsm_ros.identify import posterior, tracking
import numpy as np
import pytest

SEEDS = range(5)
P = 5
MASK = np.array([True, True, True, False, False])    # the last two: not moved by data


def chunk(rng, truth, rows=40, noise=0.1):
    """Linear data y = A z + e of one chunk; returns normal(z) -> (hess, grad) and (A, y)."""
    a = rng.normal(size=(rows, P))
    y = a @ truth + rng.normal(0.0, noise, rows)

    def normal(z):
        r = (a @ z - y) / noise
        return a.T @ a / noise ** 2, a.T @ r / noise
    return normal, (a / noise, y / noise)


def start(rng, truth):
    """Return a tracker from a first chunk's least-squares fit (a session fit's stand-in)."""
    prior = posterior.template(P, 1.0)
    normal, _ = chunk(rng, truth, rows=200)
    hess, grad = normal(np.zeros(P))
    fit = np.where(MASK, np.linalg.solve(prior.info + hess, -grad), 0.0)
    return tracking.init(prior, fit, [(0.0, *normal(fit))], np.zeros(P), np.zeros(3),
                         np.ones(3), MASK)


def session(rng, truth_at, chunks=60):
    """
    Linear chunks of a session whose truth moves (``truth_at(k)``); returns their normal()s.

    The last coordinate's regressor leans on the first's, more so as the session goes on,
    as a length's sensitivity shares more with a strength's in one part of a motion.
    """
    parts = []
    for k in range(chunks):
        a = rng.normal(size=(40, P))
        a[:, -1] += (2.0 * k / chunks - 1.0) * a[:, 0]
        y = a @ truth_at(k) + rng.normal(0.0, 0.1, 40)
        parts.append(lambda z, a=a, y=y: (a.T @ a / 0.01, a.T @ (a @ z - y) / 0.01))
    return parts


@pytest.mark.parametrize('seed', SEEDS)
def test_a_session_filtered_without_drift_is_its_batch_fit(seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 0.5, P)
    parts = session(rng, lambda k: truth, chunks=8)
    prior = posterior.template(P, 1.0)
    z = rng.normal(0.0, 0.5, P)          # any linearisation point: the data are linear
    every = np.ones(P, dtype=bool)
    tracker = tracking.init(prior, z, [(30.0, *normal(z)) for normal in parts], np.zeros(P),
                            np.zeros(3), np.ones(3), MASK, fitted=every)
    data = sum(normal(z)[0] for normal in parts)
    hess = prior.info + data
    batch = np.linalg.solve(hess, data @ z - sum(normal(z)[1] for normal in parts))
    assert np.allclose(tracker.belief.mean, batch, atol=1e-9)
    assert np.allclose(tracker.belief.info, hess)


@pytest.mark.parametrize('seed', SEEDS)
def test_a_session_filtered_with_drift_ends_at_the_newest_values(seed):
    # the first three coordinates fall over the session (fatigue), the last two stand still
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 0.5, P)
    moving = lambda k: truth + np.where(MASK, -0.004 * (k + 1), 0.0)   # noqa: E731
    parts = session(rng, moving)
    every = np.ones(P, dtype=bool)
    ends = {}
    for name, drift in (('filtered', np.where(MASK, 0.02, 0.0)), ('constant', np.zeros(P))):
        tracker = tracking.init(posterior.template(P, 1.0), np.zeros(P),
                                [(30.0, *normal(np.zeros(P))) for normal in parts], drift,
                                np.zeros(3), np.ones(3), MASK, fitted=every)
        ends[name] = (tracker.belief.mean - moving(59)) / tracker.belief.std()
    # the constant fit lands at the session's average, 0.12 above the end, and the still
    # coordinate that leans on a moving one follows it; filtered, both within 3 sigma
    assert np.all(np.abs(ends['filtered']) < 3.0)
    assert np.all(np.abs(ends['constant'][MASK]) > 10.0) and abs(ends['constant'][-1]) > 3.0


@pytest.mark.parametrize('seed', SEEDS)
def test_without_drift_the_tracker_is_the_batch_fit(seed):
    rng = np.random.default_rng(seed)
    truth = np.r_[rng.normal(0.0, 0.5, 3), 0.0, 0.0]
    tracker = first_tracker = start(rng, truth)
    rows = []
    for _ in range(10):
        normal, data = chunk(rng, truth)
        rows.append(data)
        tracker, reason = tracking.step(tracker, normal, np.zeros(P), 5.0)
        assert reason == ''
    # the batch over the chunks with the start's belief as prior: the same (linear data)
    a = np.vstack([r[0][:, MASK] for r in rows])
    y = np.concatenate([r[1] for r in rows])
    first = first_tracker.belief
    info = first.info[np.ix_(MASK, MASK)] + a.T @ a
    batch = np.linalg.solve(info, first.info[np.ix_(MASK, MASK)] @ first.mean[MASK] + a.T @ y)
    assert np.allclose(tracker.belief.mean[MASK], batch, atol=1e-8)
    assert np.array_equal(tracker.belief.mean[~MASK], np.zeros(2))


@pytest.mark.parametrize('seed', SEEDS)
def test_with_drift_a_moving_truth_is_followed_and_without_it_is_not(seed):
    rng = np.random.default_rng(seed)
    truth = np.r_[rng.normal(0.0, 0.5, 3), 0.0, 0.0]
    follow = fixed = start(np.random.default_rng(seed), truth)
    drift = np.where(MASK, 0.02, 0.0)          # per sqrt minute
    follow_errors, fixed_errors = [], []
    for k in range(60):
        moving = truth + np.where(MASK, -0.004 * (k + 1), 0.0)   # falls 0.24 over 60 chunks
        normal, _ = chunk(rng, moving)
        follow, _ = tracking.step(follow, normal, drift, 30.0)
        fixed, _ = tracking.step(fixed, normal, np.zeros(P), 30.0)
        follow_errors.append((follow.belief.mean - moving)[MASK])
        fixed_errors.append((fixed.belief.mean - moving)[MASK])
    # RMS over the last 20 chunks: the one-chunk noise is 0.016 per coordinate
    follow_rms, fixed_rms = (np.sqrt(np.mean(np.square(e[-20:])))
                             for e in (follow_errors, fixed_errors))
    assert follow_rms < 0.025 and fixed_rms > 0.08


def test_a_chunk_that_breaks_the_belief_is_refused_and_time_still_passes():
    rng = np.random.default_rng(0)
    truth = np.zeros(P)
    tracker = start(rng, truth)
    drift = np.where(MASK, 0.1, 0.0)
    before = tracker.belief

    def negative(z):
        return -1e9 * np.eye(P), np.ones(P)

    def nan(z):
        return np.full((P, P), np.nan), np.zeros(P)

    for normal, why in ((negative, 'not positive definite'), (nan, 'non-finite')):
        after, reason = tracking.step(tracker, normal, drift, 60.0)
        assert why in reason
        assert np.array_equal(after.belief.mean, before.mean)
        # widened by the drift over the chunk, along the moved coordinates only
        grown = np.diag(posterior.covariance(after.belief)) - np.diag(
            posterior.covariance(before))
        assert np.allclose(grown, np.where(MASK, 0.01, 0.0), atol=1e-9)


@pytest.mark.parametrize('seed', SEEDS)
def test_a_step_minimises_over_the_moved_coordinates_with_the_rest_held(seed):
    # the belief couples the moved coordinates to the others (a session fit's information
    # over every muscle parameter); the chunk's data see all of them
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(P, P))
    prior = posterior.Belief(rng.normal(0.0, 0.3, P), root @ root.T + np.eye(P))
    tracker = tracking.init(prior, prior.mean, [], np.zeros(P), np.zeros(3), np.ones(3),
                            MASK, fitted=np.ones(P, dtype=bool))
    normal, (a, y) = chunk(rng, np.zeros(P))
    moved, reason = tracking.step(tracker, normal, np.zeros(P), 5.0)
    assert reason == ''
    mean = moved.belief.mean
    assert np.array_equal(mean[~MASK], prior.mean[~MASK])
    # the gradient of prior plus data vanishes along the moved coordinates only
    gradient = prior.info @ (mean - prior.mean) + a.T @ (a @ mean - y)
    assert np.allclose(gradient[MASK], 0.0, atol=1e-8)
    assert np.allclose(moved.belief.info[np.ix_(MASK, MASK)],
                       prior.info[np.ix_(MASK, MASK)] + (a.T @ a)[np.ix_(MASK, MASK)])
