"""
When the online identifier starts afresh: its robust starts, their retries and repair.

A warm update continues from the current model.  A robust start (``Problem.initialise``)
searches for the basin instead; it runs at the first update, when more data are in than any
robust start saw (without memory), after ``GLOBAL_AFTER`` rejected updates in a row, and up
to ``RETRIES`` times from jittered muscles after an accepted fit that stalled well above the
noise (a wrong basin).  ``Restarts`` holds that bookkeeping; the functions below return its
next value, so the identifier asks one place what to do and tells it what happened.
"""

from dataclasses import dataclass, replace

import numpy as np

GLOBAL_AFTER = 5         # rejected updates in a row before the robust start is retried
WRONG_BASIN = 2.0        # fit residual, in noise levels, that says a fit is in a wrong basin
RETRIES = 3              # robust starts (muscles jittered) after a fit in a wrong basin
ROBUST_ITERATIONS = 40   # most LM iterations after a robust start (until stalled)


@dataclass(frozen=True)
class Restarts:
    """What decides the next robust start (a fresh identifier: one at the first update)."""

    needs_global: bool = True   # the next update runs a robust start beside the warm fit
    chunks_seen: int = 0        # most chunks an update has fitted since the last reset
    retries: int = 0            # jittered robust starts since the chunk count last grew
    rejections_in_row: int = 0  # updates rejected since the last accepted one (or start)


def on_data(state, chunks, memory):
    """
    Return the state before an update that fits ``chunks`` chunks.

    More data than any robust start saw so far are worth another one without memory; with
    memory the data add up in the belief instead (a fit they leave in a wrong basin stalls
    above the noise, which brings the robust start back, see ``on_accept``).
    """
    if chunks <= state.chunks_seen:
        return state
    return replace(state, chunks_seen=chunks, retries=0,
                   needs_global=state.needs_global or not memory)


def start_point(state, z, jitter):
    """Where a robust start begins: the current model, then jittered muscles on retries."""
    if state.retries == 0:
        return z
    return jitter(z, np.random.default_rng(state.retries))


def on_rejection(state, robust):
    """
    Return the state after a rejected update (``robust``: it ran a robust start).

    A robust start that lost is not repeated at once: warm updates go on, and
    ``GLOBAL_AFTER`` rejections in a row bring the next one.
    """
    if robust:
        state = replace(state, needs_global=False, rejections_in_row=0)
    count = state.rejections_in_row + 1
    if count >= GLOBAL_AFTER:
        return replace(state, needs_global=True, rejections_in_row=0)
    return replace(state, rejections_in_row=count)


def on_accept(state, stalled, fit_cost, noise_level):
    """
    Return the state after an accepted update whose fit ``stalled`` at ``fit_cost``.

    ``fit_cost`` is the fit's mean residual.  A fit that stalled well above the noise level
    sits in a wrong basin: the next updates try a robust start from jittered muscles, at
    most ``RETRIES`` times.
    """
    wrong = bool(stalled and fit_cost > WRONG_BASIN * noise_level
                 and state.retries < RETRIES)
    return replace(state, needs_global=wrong, retries=state.retries + int(wrong),
                   rejections_in_row=0)
