"""
Offline identification of a recorded session with the node's own pipeline.

The recording is fed, in time order and as fast as the machine allows, through the same
EMG processing and the same OnlineIdentifier the node runs (its history is the parameter
trajectory over the session, which follows a declared drift); then the parameters are
fitted on the whole session at once, from where the online identifier got to, in chunks
whose normal equations add up (memory bounded whatever the length).

Raw EMG with memory (the default) runs what the node runs instead: session fits over the
archive when due, each followed by the strength tracker (``session_fit``, ``tracking``),
and the model is the tracked one at the end: strengths at their newest values.  One
corrected fit over a whole fatiguing session holds every strength constant, and the
lengths lean to make up for it: a 10-minute raw session (strengths falling 11-23 %) ended
25.2 % off that way (a triceps head's fibre length 124 % off), 4.4 % with the node's four
session fits and the tracker.  A session shorter than the first session fit (``session_fit.FIRST``)
still gets the one fit over all of it.
"""

import dataclasses
import time

from diffmsm_ros.emg.intake import EmgIntake
from diffmsm_ros.identify import session_fit
from diffmsm_ros.identify.online import external_torque_rms, OnlineIdentifier
from diffmsm_ros.identify.published import subject_file
from diffmsm_ros.identify.window import from_arrays, resample, slice_window
import numpy as np


@dataclasses.dataclass
class History:
    """One row per update: session time, parameters, 1-sigma, outcome, compute time."""

    time: list = dataclasses.field(default_factory=list)
    theta: list = dataclasses.field(default_factory=list)
    std: list = dataclasses.field(default_factory=list)
    accepted: list = dataclasses.field(default_factory=list)
    seconds: list = dataclasses.field(default_factory=list)
    reason: list = dataclasses.field(default_factory=list)
    fit_cost: list = dataclasses.field(default_factory=list)      # sigma_q^2 units
    robust_start: list = dataclasses.field(default_factory=list)


RAW_LOOKING = 0.3   # share of negative samples above which "envelope" EMG is raw


class RecordingError(ValueError):
    """A recording that does not fit the settings it is identified with."""


def excitations_from_recording(recording, emg_config, muscle_names, with_noise=False):
    """
    Muscle excitations [S, nm] and their times [S] (node's processing).

    Raw EMG is filtered causally; envelope times are moved back by the low-pass group delay
    (the lag the filter adds), so identification sees excitations where they happened.
    With ``with_noise`` a third item is the envelope noise density per muscle (1/Hz,
    ``EmgIntake.noise_density``; None for envelope EMG).
    """
    intake = EmgIntake(emg_config, muscle_names)
    emg = np.asarray(recording.emg, dtype=float)
    if emg.shape[1] != intake.channels:
        raise RecordingError(
            f'the recording has {emg.shape[1]} EMG channels, emg.channels lists '
            f'{intake.channels}')
    if intake.filter is not None:
        emg = intake.filter.process(emg)
    elif emg.size and np.mean(emg < 0) > RAW_LOOKING:
        raise RecordingError(
            f'{100 * np.mean(emg < 0):.0f} % of the EMG samples are negative: this looks like '
            'raw EMG; set emg.kind: raw, emg.sample_rate and emg.mvc in a params file')
    times = np.asarray(recording.emg_t, dtype=float) - intake.lag
    excitations = intake.muscles(emg)
    if with_noise:
        return excitations, times, intake.noise_density
    return excitations, times


def replay(ident, recording, excitations, period, progress=None, on_update=None, paced=False,
           emg_t=None):
    """
    Feed a recording through an OnlineIdentifier, updating every ``period`` s of data.

    ``progress(done, note)``, if given, hears after each update how many seconds of the
    session are done and the update's outcome.  ``paced`` emulates a live node whose worker
    thread cannot start an update before the previous one finished: an update that took c
    seconds of compute delays the next one until c seconds of session time have passed (no
    sleeping: the clock is the data).

    A session fit (raw EMG, ``OnlineIdentifier.archiving``) runs when due, on the data so
    far, and is adopted or refused once ``session_fit.HELD_OUT`` chunks of data came after
    it (paced, also not before its compute time has passed); one still waiting at the end
    of the recording is decided on what there is.  Its outcome is a row of the history.
    """
    jt = recording.joint_t
    et = recording.emg_t if emg_t is None else emg_t
    t0 = min(jt[0], et[0])
    t_end = max(jt[-1], et[-1])
    history = History()

    def add_row(result):
        history.time.append(limit - t0)
        history.theta.append(np.asarray(ident.problem.theta_of(ident.z)))
        history.std.append(None if ident.last_analysis is None else ident.last_analysis.std)
        history.accepted.append(result.accepted)
        history.seconds.append(result.seconds)
        history.reason.append(result.reason)
        history.fit_cost.append(result.fit_cost)
        history.robust_start.append(result.robust_start)
        if on_update is not None:
            on_update(result, ident)

    i = j = 0
    next_update = t0 + period
    job = None
    while True:
        limit = min(next_update, t_end)
        while i < len(jt) and jt[i] <= limit:
            vel = recording.velocity[i]
            ident.add_encoders(jt[i], recording.position[i],
                               None if np.any(~np.isfinite(vel)) else vel,
                               recording.effort[i])
            i += 1
        k = np.searchsorted(et, limit, side='right')
        if k > j:
            ident.add_excitations(et[j:k], excitations[j:k])
            j = k
        if job is None:
            job = ident.session_job()
            if job is not None:
                started = time.perf_counter()
                fitted = ident.run_session_job(job)
                compute = time.perf_counter() - started
                adopt_at = limit + max(compute if paced else 0.0,
                                       session_fit.HELD_OUT * ident.archive.span)
        if job is not None and (limit >= adopt_at or limit >= t_end):
            add_row(ident.adopt_session(job, fitted, compute))
            job = None
        result = ident.update()
        add_row(result)
        if progress is not None:
            progress(limit - t0, result.reason)
        if limit >= t_end:
            break
        next_update += period
        if paced:
            next_update = max(next_update, limit + result.seconds)
    return history


def session_window(recording, excitations, emg_t, model, history_steps, max_seconds):
    """Return the whole (or the last ``max_seconds``) session on the model grid as a Window."""
    h = model.timestep
    t_lo = max(recording.joint_t[0], emg_t[0] + history_steps * h)
    t_hi = min(recording.joint_t[-1], emg_t[-1])
    t_lo = max(t_lo, t_hi - max_seconds)
    grid = np.arange(np.ceil(t_lo / h), np.floor(t_hi / h) + 1) * h
    q = resample(recording.joint_t, recording.position, grid)
    vel = recording.velocity
    qd = None if np.any(~np.isfinite(vel)) else resample(recording.joint_t, vel, grid)
    tau = resample(recording.joint_t, recording.effort, grid)
    emg_grid = np.concatenate([grid[0] - h * np.arange(history_steps, 0, -1), grid])
    u = resample(emg_t, excitations, emg_grid, hold=True)
    return from_arrays(q, tau, u, h, qd=qd, history=history_steps), grid


def split_windows(win, steps, warmup):
    """
    Cut a long window into windows of ``steps`` samples (one compiled shape).

    Consecutive windows overlap by the ``warmup`` samples that start each of them (weighted
    0); the last one is aligned to the end and weights only samples not yet covered.
    """
    if win.length <= steps:
        return [win]
    stride = steps - warmup
    starts = list(range(0, win.length - steps + 1, stride))
    covered = starts[-1] + steps
    out = []
    for s in starts:
        w = slice_window(win, s, steps)
        weight = np.asarray(w.weight).copy()
        weight[:warmup] = 0.0
        out.append(dataclasses.replace(w, weight=weight))
    if covered < win.length:
        s = win.length - steps
        w = slice_window(win, s, steps)
        weight = np.asarray(w.weight).copy()
        weight[:max(warmup, covered - s)] = 0.0
        out.append(dataclasses.replace(w, weight=weight))
    return out


def identify_recording(template, recording, config, emg_config, progress=None, on_update=None,
                       period=None):
    """
    Identify a recorded session; returns (SubjectFile, History, final-fit info).

    ``config`` is the IdentifyConfig, ``emg_config`` the EmgConfig (``settings`` builds both
    from a parameters file); ``progress`` is passed to ``replay``.

    ``period`` (s of data between online updates) defaults to a fast replay: one update
    per chunk (with memory each chunk is absorbed once the next ones cover the window;
    without, updates on one window each, back to back), which keeps an offline run faster
    than real time; pass ``identification.period`` to replay exactly what the node does.
    """
    if period is None and not config.memory:
        config = dataclasses.replace(config, window=config.chunk or config.window, chunk=0.0)
        period = max(config.period, config.window - config.holdout)
    model = template.model
    excitations, emg_t, envelope_noise = excitations_from_recording(
        recording, emg_config, model.muscle_names, with_noise=True)
    # raw EMG with memory: the node's session fits and tracker (archiving needs the low-pass)
    tracked = envelope_noise is not None and config.corrected_fit and config.memory
    ident = OnlineIdentifier(template, config, lowpass=emg_config.lowpass if tracked else None)
    ident.envelope_noise = envelope_noise
    if period is None:
        period = ident.fit_span * ident.h
    history = replay(ident, recording, excitations, period, progress, on_update, emg_t=emg_t)
    win, grid = session_window(recording, excitations, emg_t, model, ident.history,
                               np.inf)
    wins = split_windows(win, ident.fit_steps, ident.warmup_steps)
    problem = ident.problem
    started = time.monotonic()
    from_node = tracked and ident.session_fits > 0
    if from_node:
        # the node's model at the end of the session (see the module text)
        z, costs = np.asarray(ident.z, dtype=float), [None]
        final_fit = 'session fits, strengths tracked (raw EMG)'
    elif envelope_noise is not None and config.corrected_fit:
        # raw EMG: the muscles by the fit corrected for the envelope's error, from the
        # template, the bones kept at the template's (identify/corrected.py)
        z, costs = problem.corrected_fit(np.zeros(problem.space.size), wins, envelope_noise,
                                         emg_config.lowpass)
        final_fit = 'corrected equation error (raw EMG)'
    else:
        # from where the online identifier got to, through the robust start on all the
        # data: one model for the whole session (with drift, what it held on average; the
        # history holds where the online identifier followed it)
        z, costs = problem.solve(ident.z, wins, restarts=1, bone_starts=(), escapes=())
        final_fit = 'shooting'
    if problem.unphysical(z) and not problem.unphysical(ident.z):
        # weakly determined inertia drifted out of physical bodies, which a model file
        # cannot hold: fit again from the online model with every step kept physical
        z, costs = problem.fit(ident.z, wins, valid=lambda zz: not problem.unphysical(zz))
    hess, _, half, count, scores = problem.normal(z, wins)
    analysis = problem.analyse(z, hess, half, count,
                               external_torque=external_torque_rms(wins), scores=scores,
                               wins=wins, envelope_noise=envelope_noise)
    if from_node:
        analysis = _wider(analysis, ident.last_analysis)
    summary = dict(ident.identification_summary())
    summary.update({'window': float(grid[-1] - grid[0]), 'final_fit': final_fit,
                    'final_fit_iterations': len(costs) - 1,
                    'final_fit_seconds': time.monotonic() - started,
                    'loss': problem.mean_cost(half, wins),
                    'time': time.strftime('%Y-%m-%dT%H:%M:%S%z')})
    sf = subject_file(template, problem, z, analysis, summary)
    info = {'window': win, 'grid': grid, 'problem': problem, 'z': z, 'analysis': analysis,
            'excitations': excitations}
    return sf, history, info


def _wider(whole, tracked):
    """
    Return the whole session's analysis with each 1-sigma at least the tracked belief's.

    The tracked belief (``Problem.analyse_belief``) carries the declared drift (a strength
    at the end of the session is less certain than its average) but takes the corrected
    objective's curvature for information, which residuals correlated in time overstate;
    the whole session's analysis at the same model widens for those (the sandwich) and for
    the envelope's error but holds the parameters constant.  On two 15-minute raw sessions
    (seeds 4 and 3, no fatigue) the belief's 1-sigma alone held the truth within 2 sigma
    for 11 and 15 of 18 muscle parameters, the larger of the two for 17 and 17 (the whole
    session's was up to 4.9 times the belief's).
    """
    return dataclasses.replace(whole, std=np.maximum(whole.std, tracked.std),
                               std_z=np.maximum(whole.std_z, tracked.std_z))
