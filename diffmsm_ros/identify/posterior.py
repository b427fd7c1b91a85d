"""
A Gaussian belief about the normalised parameters z, carried through a session.

``Belief(mean, info, spread)``: mean [P] and information matrix [P, P] (inverse
covariance), both in the normalised space of ``params.ParamSpace``; ``spread`` (optional) is
the covariance of the mean as an estimate, where it differs from ``info``'s inverse.  The
information weights the belief against new data (the estimate); the spread says how far
that mean may be off (the reported 1-sigma).  They differ when the data's residuals are
correlated in time (a model mismatch, an envelope's error): Gauss-Newton information then
overstates what the data carried, and ``absorb`` given the data's score spread (the
sandwich's meat) carries the wider spread on, so that the 1-sigma of a long session stays
honest after the newest data have been absorbed.  None means ``info``'s inverse.  Pure
functions move it along:

- ``template(size, prior_std)``: the template prior N(0, prior_std^2 I);
- ``absorb(belief, hess, grad, z_lin, scores)``: add data whose least-squares cost,
  linearised at z_lin, is 0.5 |r + J (z - z_lin)|^2 (hess = J^T J, grad = J^T r at z_lin;
  ``scores`` their score spread, default hess: white residuals);
- ``widen(belief, drift, seconds)``: a random walk of ``drift`` (normalised units per
  square root of a minute, per parameter) over ``seconds``: P <- P + diag(drift^2) t
  (the spread too);
- ``spread(belief)``: the covariance of the mean as an estimate;
- ``terms(belief, z)``: the prior's (hessian, gradient, cost) at z for a solver;
- ``cap(hess, info)``: the factor that keeps data within the information ``info`` allows;
- ``consistency(belief, hess, grad, z)``: how far new data pull from the belief, against
  what the belief and the data's noise allow; ``let_go(belief, check)`` widens the belief
  along what the data contradict.

With no drift and data linear in z, absorbing data piece by piece and fitting the newest
piece against the belief gives the batch fit over all of it (recursive least squares),
which ``test_posterior`` checks.
"""

import typing

import numpy as np
from scipy import special

# The chance below which new data are taken to contradict the belief (``Consistency``).
# It is checked after every update, about 200 times in 15 minutes (800 in an hour): at
# 1e-4 a right belief is let go of about once in 50 such sessions.  Three spreads above
# the mean, the rule before, was a chance of 2e-3 to 5e-3 for the statistics of a
# 15-minute session (2e-2 where one term dominates): false alarms in every long session,
# each letting the newest chunk move the model along a direction it had pinned down.
LET_GO_P = 1e-4


class Belief(typing.NamedTuple):
    """N(mean, info^-1) in normalised units; ``spread``: see the module text."""

    mean: np.ndarray
    info: np.ndarray
    spread: typing.Optional[np.ndarray] = None

    @property
    def size(self):
        return self.mean.shape[0]

    def std(self):
        """1-sigma per coordinate (normalised units)."""
        return np.sqrt(np.clip(np.diag(covariance(self)), 0.0, None))


def template(size, prior_std, centre=None):
    """Return the template prior: N(centre (default 0), prior_std^2 I)."""
    mean = np.zeros(size) if centre is None else np.asarray(centre, dtype=float).copy()
    return Belief(mean, np.eye(size) / prior_std ** 2)


def covariance(belief):
    """Covariance of the belief (symmetrised inverse of its information)."""
    cov = np.linalg.inv(belief.info)
    return 0.5 * (cov + cov.T)


def spread(belief):
    """Covariance of the belief's mean as an estimate (``info``'s inverse unless carried)."""
    return covariance(belief) if belief.spread is None else belief.spread


def terms(belief, z):
    """(hessian, gradient, cost) of 0.5 (z - mean)^T info (z - mean) at z."""
    d = np.asarray(z, dtype=float) - belief.mean
    g = belief.info @ d
    return belief.info, g, 0.5 * float(d @ g)


def absorb(belief, hess, grad, z_lin, scores=None):
    """
    Return the belief with data added, linearised at z_lin (see the module text).

    The mean is B (info m + hess z_lin - grad), B the inverse of info + hess; its spread
    B (info V info + S) B, V the belief's spread and S the data's ``scores`` (their
    sandwich meat, in hess's units) raised to at least hess (S + the positive part of
    hess - S): residuals whiter than their noise claim no more than their information.
    Without scores and a carried spread it is B.
    """
    hess = np.asarray(hess, dtype=float)
    info = belief.info + hess
    info = 0.5 * (info + info.T)
    rhs = belief.info @ belief.mean + hess @ np.asarray(z_lin, dtype=float) - np.asarray(
        grad, dtype=float)
    mean = np.linalg.solve(info, rhs)
    if scores is None and belief.spread is None:
        return Belief(mean, info)
    data = hess
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        values, vectors = np.linalg.eigh(0.5 * (hess - scores + (hess - scores).T))
        data = scores + (vectors * np.clip(values, 0.0, None)) @ vectors.T
    meat = belief.info @ spread(belief) @ belief.info + data
    bread = np.linalg.inv(info)
    out = bread @ meat @ bread
    return Belief(mean, info, 0.5 * (out + out.T))


def widen(belief, drift, seconds):
    """Spread the belief by a random walk of ``drift`` (per sqrt minute) over ``seconds``."""
    drift = np.broadcast_to(np.asarray(drift, dtype=float), belief.mean.shape)
    if seconds <= 0 or not np.any(drift > 0):
        return belief
    walk = np.diag(drift ** 2 * seconds / 60.0)
    info = np.linalg.inv(covariance(belief) + walk)
    carried = None if belief.spread is None else belief.spread + walk
    return Belief(belief.mean, 0.5 * (info + info.T), carried)


def conditional(belief, idx, z):
    """Return the belief about coordinates ``idx`` with the others held at z's."""
    idx = np.asarray(idx)
    rest = np.setdiff1d(np.arange(belief.size), idx)
    info = belief.info[np.ix_(idx, idx)]
    mean = belief.mean[idx]
    if rest.size:
        held = np.asarray(z, dtype=float)[rest] - belief.mean[rest]
        shift = belief.info[np.ix_(idx, rest)] @ held
        mean = mean - np.linalg.solve(info, shift)
    return Belief(mean, info)


def whitened(hess, info):
    """
    Eigenvalues of the information ``hess`` in the coordinates where ``info`` is the identity.

    Raises ``numpy.linalg.LinAlgError`` when ``info`` is not positive definite.
    """
    root = np.linalg.cholesky(np.asarray(info, dtype=float))
    white = np.linalg.solve(root, np.linalg.solve(root, np.asarray(hess, dtype=float)).T)
    return np.linalg.eigvalsh(0.5 * (white + white.T))


def cap(hess, info):
    """
    Return the largest c <= 1 with c hess <= info (Loewner order).

    Data scaled by it hold no more information than ``info`` allows in any direction.
    """
    info = np.asarray(info, dtype=float)
    ridge = 1e-9 * max(np.trace(info) / max(info.shape[0], 1), 1e-300)
    try:
        largest = float(np.max(whitened(hess, info + ridge * np.eye(info.shape[0]))))
    except (np.linalg.LinAlgError, ValueError):
        return 1.0      # no usable bound: the data stand as they are (non-finite ones are
        #                 refused where the belief is checked)
    return 1.0 / largest if largest > 1.0 else 1.0


class Consistency(typing.NamedTuple):
    """
    The disagreement between a belief and new data (``consistency``).

    ``shift`` = z* - mean, where z* is the belief updated with the data (one Gauss-Newton
    solve); ``statistic`` = shift^T info shift.  ``expected`` and ``spread`` are the
    statistic's mean and standard deviation when the belief's mean is right and the data
    carry the noise their information says: in the belief's whitened coordinates, where the
    data's information has eigenvalues a_i, the statistic is sum f_i chi2_1 with
    f_i = a_i / (1 + a_i).
    """

    statistic: float
    expected: float
    spread: float
    shift: np.ndarray

    def p_value(self):
        """
        Chance of a statistic at least this large when the belief is right (NaN if unknown).

        sum f_i chi2_1 is taken as a scaled chi-square with its mean and spread
        (Satterthwaite): c chi2_nu, c = spread^2 / (2 mean), nu = 2 mean^2 / spread^2.
        """
        if not (np.isfinite(self.statistic) and np.isfinite(self.expected)
                and np.isfinite(self.spread) and self.expected > 0 and self.spread > 0):
            return float('nan')
        scale = self.spread ** 2 / (2.0 * self.expected)
        dof = 2.0 * self.expected ** 2 / self.spread ** 2
        return float(special.chdtrc(dof, self.statistic / scale))

    def disagrees(self, p=LET_GO_P):
        """Whether a right belief would see a statistic this large with chance below ``p``."""
        chance = self.p_value()
        return bool(np.isfinite(chance) and chance < p)


def consistency(belief, hess, grad, z_lin):
    """Return the ``Consistency`` of data (``absorb``'s arguments) with the belief."""
    shift = absorb(belief, hess, grad, z_lin).mean - belief.mean
    statistic = float(shift @ belief.info @ shift)
    try:
        a = np.clip(whitened(hess, belief.info), 0.0, None)
    except np.linalg.LinAlgError:
        return Consistency(statistic, float('nan'), float('nan'), shift)
    f = a / (1.0 + a)
    return Consistency(statistic, float(np.sum(f)), float(np.sqrt(2.0 * np.sum(f * f))),
                       shift)


def let_go(belief, check):
    """
    Return the belief widened along the shift the data asked for (``Consistency``).

    The covariance gains a v v^T along v = shift, so much that the shift's squared
    distance under the belief falls from the statistic to its expected value: the belief
    no longer claims to know the direction the data contradict, and keeps the rest.
    """
    v, s = check.shift, check.statistic
    target = max(check.expected, 1e-12)
    if not (np.all(np.isfinite(v)) and np.isfinite(s)) or s <= target:
        return belief
    alpha = 1.0 / target - 1.0 / s                 # the covariance's gain along v
    pv = belief.info @ v
    info = belief.info - alpha * np.outer(pv, pv) / (1.0 + alpha * s)
    carried = None if belief.spread is None else belief.spread + alpha * np.outer(v, v)
    return Belief(belief.mean, 0.5 * (info + info.T), carried)


def usable(belief):
    """Whether the belief is finite with a positive definite information matrix."""
    if not (np.all(np.isfinite(belief.mean)) and np.all(np.isfinite(belief.info))):
        return False
    if belief.spread is not None and not np.all(np.isfinite(belief.spread)):
        return False
    try:
        np.linalg.cholesky(belief.info)
    except np.linalg.LinAlgError:
        return False
    return True


def gained(belief, reference):
    """Information gained over ``reference`` (nats): 0.5 log det(info) - ... of the two."""
    _, a = np.linalg.slogdet(belief.info)
    _, b = np.linalg.slogdet(reference.info)
    return 0.5 * float(a - b)
