"""
Raw EMG with memory: the corrected fit carried chunk by chunk after a session fit.

A session fit (``session_fit``) fits one model to the whole archive: a strength that falls
during the session is averaged, and the next fit is due only once the data have grown 1.5
times (on the live bench it did not finish within 15 minutes).  So once a session fit is
done, the session's windows are filtered once more, linearised at the fit, under the
declared drift (``init``): the belief (``posterior.Belief``) it ends with, the strengths
at their newest values, is the model adopted, and each new chunk of data moves it as a
Kalman filter would:

1. the belief widens by the declared drift over the chunk's span (strengths may fatigue);
2. the chunk's corrected objective Q (``corrected``: the envelope's error removed from the
   equation error's expectation) gives its Gauss-Newton Hessian and gradient at the
   belief's mean, whitened there;
3. they are absorbed (``posterior.absorb`` of the belief about the strengths with the
   rest held, ``posterior.conditional``): one Gauss-Newton step in the strengths only
   (``TRACKED``); the lengths, bones and the rest stay as the session fit left them.
   Moving every muscle parameter, the lengths took up part of the fatigue chunk by chunk
   and wandered off (an 8-minute raw session, strengths falling 10-30 %: muscle error
   5.8 % at 3.5 min, 13.9 % at the end; strengths only: 9.6 %).

Q's per-chunk Hessian carries the correction's negative term, so a chunk alone may be
indefinite; a step whose information is not positive definite, or not finite, is refused
and the belief stays widened.  ``Tracker`` is the state; ``init`` and ``step`` are pure.
"""

import typing

from diffmsm_ros.identify import posterior
import numpy as np


TRACKED = ('max_isometric_force',)     # the fields the chunks move (what fatigue changes)


def moves(entry):
    """Say whether the tracker moves this ``params.Entry`` (a muscle field in ``TRACKED``)."""
    return entry.section == 'muscles' and entry.field in TRACKED


class Tracker(typing.NamedTuple):
    """The carried belief of a raw-EMG session and what its chunks are read with."""

    belief: posterior.Belief    # normalised parameters, information of the data so far
    correction: np.ndarray      # c_m = s_m^2 / (1 + s_m^2) per muscle (``corrected``)
    density: np.ndarray         # envelope noise S0 per muscle (1/Hz)
    mask: np.ndarray            # the coordinates the chunks move (``moves``)


def init(prior, z, pieces, drift, correction, density, mask, fitted=None, after=0.0):
    """
    Return the tracker after a session fit at z: the session filtered as chunks are.

    ``pieces`` are the fitted windows in session order, each (seconds since the one
    before, hessian, gradient) of its corrected objective Q at z (``normal`` of a chunk);
    ``after`` the seconds from the last one to the end of the fitted data.  Linearised at
    z, from ``prior``, each window is absorbed after the belief widened by ``drift`` over
    the time since the one before, as ``step`` does with chunks.  The fit itself holds
    every parameter constant over the session, so a strength that fell is fitted at its
    session average and the lengths lean to make up for it (a 10-minute raw session,
    strengths falling 20 %: muscle error 3.97 % at the end, two lengths 2.8 and 2.9 sigma
    off); filtered, the strengths end at their newest values and the lengths are freed
    of it (2.34 %, none beyond 2 sigma).  With no drift the mean is one Gauss-Newton step
    from z (none at the fit's optimum) and the information the prior's plus the windows'.
    Only the coordinates ``fitted`` (default ``mask``) take data; the chunks move ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    fitted = mask if fitted is None else np.asarray(fitted, dtype=bool)
    keep = np.outer(fitted, fitted)
    z = np.asarray(z, dtype=float)
    belief = posterior.Belief(np.asarray(prior.mean, dtype=float).copy(), prior.info)
    for seconds, hess, grad in pieces:
        belief = posterior.widen(belief, drift, seconds)
        belief = posterior.absorb(belief, np.where(keep, np.asarray(hess, dtype=float), 0.0),
                                  np.where(fitted, np.asarray(grad, dtype=float), 0.0), z)
        if not posterior.usable(belief):
            break       # the caller finds it unusable and starts no tracker
    belief = posterior.widen(belief, drift, after)
    return Tracker(belief, np.asarray(correction, dtype=float),
                   np.asarray(density, dtype=float), mask)


def step(tracker, normal, drift, seconds):
    """
    Move the tracker over one chunk of ``seconds``; return (tracker, reason or '').

    ``normal(z)`` returns the chunk's corrected (hessian, gradient) at z; ``drift`` is the
    random walk per coordinate (normalised units per sqrt minute).  The step moves the
    coordinates of ``mask`` with the others held (a Gauss-Newton step conditional on them);
    the chunk's information adds to theirs.  A refused chunk (reason given) leaves the
    belief widened by the drift only.
    """
    mask = tracker.mask
    belief = posterior.widen(tracker.belief, np.where(mask, drift, 0.0), seconds)
    widened = tracker._replace(belief=belief)
    hess, grad = (np.asarray(x, dtype=float) for x in normal(belief.mean))
    if not (np.all(np.isfinite(hess)) and np.all(np.isfinite(grad))):
        return widened, 'non-finite chunk information'
    idx = np.flatnonzero(mask)
    block = np.ix_(idx, idx)
    try:
        moved = posterior.absorb(posterior.conditional(belief, idx, belief.mean),
                                 hess[block], grad[idx], belief.mean[idx])
    except np.linalg.LinAlgError:
        moved = None
    if moved is None or not posterior.usable(moved):
        return widened, 'belief not positive definite (or not finite)'
    mean, info = belief.mean.copy(), belief.info.copy()
    mean[idx], info[block] = moved.mean, moved.info
    return tracker._replace(belief=posterior.Belief(mean, info)), ''
