"""
The online identifier: buffers, periodic windowed updates, acceptance and rollback.

Usable from a plain Python loop (the ROS node wraps it): feed encoder samples and muscle
excitations as they come, call ``update()`` every ``period`` seconds of data.  Each update
warm-starts from the current parameters, takes a few Levenberg-Marquardt steps on the last
``window`` seconds minus a hold-out tail, and is accepted only if it lowers the error on
that tail and yields a valid, finite model.  Time going backwards clears the buffers.

Raw EMG with ``lowpass`` given (the envelope low-pass, Hz) and ``corrected_fit`` on: the
session's data are archived, and the caller runs session fits (``session_job``,
``run_session_job``, ``adopt_session``; ``session_fit``): they alone update the model (the
online updates do not run).  With memory, after the first one, the strengths are tracked
chunk by chunk (``track``, ``identify/tracking.py``).  An accepted model leaves as a
``SubjectFile`` (``current_file``, built by ``identify/published.py``).
"""

import dataclasses
import time
import typing

from diffmsm_ros.identify import (params, posterior, session_fit, solvers, strategy,
                                  tracking, uncertainty)
from diffmsm_ros.identify.buffers import GridBuffer
from diffmsm_ros.identify.config import FIRST_FIT
from diffmsm_ros.identify.problem import NOISE_LEVEL, Problem
from diffmsm_ros.identify.published import subject_file
from diffmsm_ros.identify.window import from_arrays
from diffmsm_ros.model import schema
import numpy as np

BACKWARD_TOLERANCE = 0.05  # s: an older sample than this is a restart, not jitter
STALLED = 1e-3           # relative fall of the fit residual in an LM iteration: fit stalled
SESSION_OWNED = 'raw EMG: only session fits update the model'
EXPLODED = 20.0          # normalised units one update may move a parameter (e^20 for logs)
HELD_BACK = 'did not lower the hold-out error and carried-belief term'
PENDING = 20             # raw EMG, tracking: most chunks waiting to be tracked (newest kept)


@dataclasses.dataclass
class UpdateResult:
    """What one update did."""

    accepted: bool
    reason: str
    fit_cost: float = float('nan')        # mean squared shooting residual, fitted part
    holdout_before: float = float('nan')  # hold-out cost with the previous parameters
    holdout_after: float = float('nan')   # hold-out cost with the candidate
    seconds: float = 0.0                  # compute time of the update
    data_time: float = float('nan')       # session time (s) at the window's end
    robust_start: bool = False            # the robust start ran (first update, or retried)
    stalled: bool = False                 # the kept fit's last LM iteration barely helped
    session_seconds: float = 0.0          # a session fit: the session data it fitted (s)


class SessionFitted(typing.NamedTuple):
    """A finished session fit: z, and with memory what the tracker starts from."""

    z: np.ndarray
    pieces: typing.Optional[list] = None            # per window, Q's (hessian, gradient) at z
    correction: typing.Optional[np.ndarray] = None  # c per muscle (``corrected``)


@dataclasses.dataclass(frozen=True)
class SessionJob:
    """A session fit to run (``run_session_job``): the archive's windows when it started."""

    chunks: int                 # chunks archived when it started (later ones are held out)
    seconds: float              # session data (s) the windows span
    windows: list
    density: object             # envelope noise S0 per muscle (1/Hz)
    lowpass: float              # envelope low-pass (Hz)
    numbers: tuple              # the windows' chunk numbers (the archive keeps every stride-th)
    tracked: typing.Optional[np.ndarray] = None     # z of the tracked model when it started


class OnlineIdentifier:
    """Windowed online identification of a subject model (see the module docstring)."""

    def __init__(self, template, config, problem=None, lowpass=None):
        self.template = template
        self.config = config
        self.lowpass = lowpass
        self.problem = problem or Problem(template, config)
        model = template.model
        self.h = model.timestep
        self.nq, self.nm = model.n_joints, model.n_muscles
        # the window is fitted in pieces of one compiled shape ("chunks").  Without memory
        # the newest chunk ends at the hold-out and older ones are added as data
        # accumulate; with memory chunks lie end to end from where the carried belief
        # ends, and the oldest is absorbed into the belief once the others cover the window
        chunk = config.chunk or (
            config.holdout + 0.5 * (config.window - config.holdout) if config.memory
            else config.window)
        self.chunk_steps = int(round(chunk / self.h))
        self.holdout_steps = int(round(config.holdout / self.h))
        self.warmup_steps = int(round(config.warmup / self.h))
        self.history = int(round(schema.MAX_DELAY / self.h))
        self.window_steps = int(round((config.window - config.holdout) / self.h))
        self.chunks = max(1, int((config.window - config.holdout) / (chunk - config.holdout)
                                 + 1e-9))
        total = (self.chunks + 1) * self.fit_span + self.holdout_steps + self.warmup_steps
        capacity = total + self.history + int(round(2.0 / self.h))
        required = np.r_[np.ones(self.nq), np.zeros(self.nq), np.ones(self.nq)].astype(bool)
        self.encoders = GridBuffer(capacity, 3 * self.nq, self.h, required=required)
        # linear interpolation: EMG stamped a fraction of a sample off the grid (receipt
        # times) stays a fraction of a sample off, instead of a whole sample late
        self.emg = GridBuffer(capacity, self.nm, self.h)
        self.z = np.zeros(self.problem.space.size)
        self.good_z = self.z.copy()
        self.enabled = True
        self.accepted = 0
        self.rejected = 0
        self.resets = 0
        self.restarts = strategy.Restarts()
        self.last_analysis = None
        self.last_result = None
        self.last_time = {}
        # raw EMG: the envelope filter's noise density S0 per muscle (1/Hz), set by whoever
        # filters the EMG; it widens the 1-sigma values to what the envelope allows
        self.envelope_noise = None
        # memory: what the data before ``arrival_index`` determined (the arrival cost),
        # widened by the declared drift as time passes; the template prior at first
        self.drift = params.drift_vector(self.problem.space, config.drift)
        self.arrival = self.problem.belief()
        self.good_arrival = self.arrival
        self.arrival_index = None
        self.carried_envelope = None     # raw EMG: envelope information absorbed so far
        self.absorbed = 0                # chunks absorbed into the belief
        self.belief_rollbacks = 0        # absorptions refused (non-finite, not definite)
        self.beliefs_let_go = 0          # beliefs widened where data disagreed with them
        self.posterior = self.arrival    # the belief after the newest accepted update
        self._new_archive()
        self._new_tracker()

    # ------------------------------------------------------------------ input
    def _check_time(self, stream, t):
        """Clear the buffers when a stream's time jumps backwards (a bag restarting)."""
        last = self.last_time.get(stream)
        if last is not None and t < last - BACKWARD_TOLERANCE:
            self.clear()
            self.resets += 1
            last = None
        self.last_time[stream] = t if last is None else max(last, t)

    def _origin(self, t):
        if self.encoders.origin is None and self.emg.origin is None:
            origin = round(t / self.h) * self.h
            self.encoders.reset(origin)
            self.emg.reset(origin)

    def add_encoders(self, t, q, qd=None, tau=None):
        """One encoder sample at time t (s): angles (rad), velocities, exo torque (N m)."""
        self._check_time('encoders', t)
        self._origin(t)
        qd = np.full(self.nq, np.nan) if qd is None else qd
        tau = np.zeros(self.nq) if tau is None else tau
        self.encoders.push(t, np.concatenate([np.ravel(q), np.ravel(qd), np.ravel(tau)]))

    def add_excitations(self, t, u):
        """Excitations [S, nm] at times t [S] (s), before each muscle's gain and delay."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        u = np.asarray(u, dtype=float).reshape(len(t), self.nm)
        for tk, uk in zip(t, u):
            self._check_time('emg', tk)
            self._origin(tk)
            self.emg.push(tk, uk)

    def clear(self):
        """Drop buffered data (the model and what earlier data determined are kept)."""
        self.encoders.reset()
        self.emg.reset()
        self.last_time = {}
        self.arrival_index = None
        self.archive_index = None

    def reset(self):
        """Back to the template model with empty buffers."""
        self.clear()
        self.z = np.zeros(self.problem.space.size)
        self.good_z = self.z.copy()
        self.restarts = strategy.Restarts()
        self.last_analysis = None
        self.arrival = self.good_arrival = self.posterior = self.problem.belief()
        self.carried_envelope = None
        self.absorbed = 0
        self.beliefs_let_go = 0
        self._new_archive()
        self._new_tracker()

    def _new_archive(self):
        self.archive = session_fit.SessionArchive(self.fit_span * self.h)
        self.archive_index = None
        self.archive_lost = 0.0          # s of data the buffers dropped before archiving
        self.session_fits = 0            # session fits adopted

    def _new_tracker(self):
        self.tracker = None              # raw EMG with memory, after a session fit
        self.pending = []                # (chunk number, window) not tracked yet (<= PENDING)
        self.tracked_upto = None         # the last chunk number the tracker moved over
        self.tracked_from = (0, 0)       # (chunks tracked, samples fitted) at its start
        self.tracked = 0                 # chunks the tracker moved over (refused ones too)
        self.tracking_refused = 0        # chunks it refused (see ``tracking.step``)
        self.pending_dropped = 0         # chunks dropped untracked (more than PENDING)

    # ------------------------------------------------------------------ windows
    def available(self):
        """Newest grid index both streams reached, and how many samples are usable."""
        end = min(self.encoders.newest, self.emg.newest)
        start = max(self.encoders.oldest, self.emg.oldest + self.history)
        return end, end - start + 1

    def ready(self):
        """
        Say whether an update can run: one chunk of data is in.

        With memory the first update waits for ``FIRST_FIT`` s of data to fit (or the
        whole window, if shorter).  Its robust start is the one that finds the basin: the
        chunks that follow add up in the belief and do not bring it back, so a first fit
        on less data can settle in a wrong basin for the session (the 90 s bench session
        from the template 15 % off, default window: after 4.5 s of data 38 % muscle error
        to the end; after 9 s 1.3 %, 0.6 % at 90 s).
        """
        need = self.chunk_steps
        if self.config.memory and self.restarts.chunks_seen == 0:
            fitted = min(self.window_steps, int(round(FIRST_FIT / self.h)))
            need = max(need, fitted + self.holdout_steps)
        return self.available()[1] >= need + self.warmup_steps

    def _window(self, end, steps, last=None, first=None):
        """
        Window of ``steps`` samples ending at grid index ``end``; warm-up weighted 0.

        Samples after ``last`` (default ``end``) weigh 0 too; those not received yet are
        filled in.  Samples before ``first`` (default: after the warm-up) are data the
        window runs through, weighted 0 (fitted elsewhere: a longer warm-up).
        """
        start = end - steps + 1
        newest = min(self.encoders.newest, self.emg.newest)
        have = min(end, newest) - start + 1
        enc, enc_ok = self.encoders.get(start, have)
        emg, emg_ok = self.emg.get(start - self.history, have + self.history)
        if have < steps:
            pad = steps - have
            enc = np.concatenate([enc, np.repeat(enc[-1:], pad, axis=0)])
            emg = np.concatenate([emg, np.repeat(emg[-1:], pad, axis=0)])
            enc_ok = np.concatenate([enc_ok, np.zeros(pad, bool)])
            emg_ok = np.concatenate([emg_ok, np.zeros(pad, bool)])
        nq = self.nq
        q, qd, tau = enc[:, :nq], enc[:, nq:2 * nq], enc[:, 2 * nq:]
        ok = enc_ok & emg_ok[self.history:]
        if last is not None and last < end:
            ok[last - start + 1:] = False
        weight = ok.astype(float)
        weight[:max(self.warmup_steps, 0 if first is None else first - start)] = 0.0
        q = np.where(ok[:, None], q, np.nan)
        q = _fill(q)
        emg = _fill(np.where(emg_ok[:, None], emg, np.nan))
        return from_arrays(q, _fill(tau), emg, self.h, qd=qd, history=self.history,
                           weight=weight)

    def windows(self):
        """(fit windows, newest first, and the hold-out window) for the newest data."""
        end, count = self.available()
        hold = self._window(end, self.holdout_steps + self.warmup_steps)
        if self.config.memory:
            return self._carried_windows(end, count), hold
        chunks = min(self.chunks, 1 + (count - self.chunk_steps - self.warmup_steps) //
                     self.fit_span)
        fit = [self._window(end - self.holdout_steps - k * self.fit_span, self.fit_steps)
               for k in range(max(chunks, 1))]
        return fit, hold

    def _carried_windows(self, end, count):
        """
        Return the chunks from where the carried belief ends to the hold-out, newest first.

        Chunks lie end to end from ``arrival_index``; while the others still cover the
        window, the oldest one is absorbed into the belief at the current parameters (its
        normal equations) and the belief widened by the drift over its span.
        """
        last = end - self.holdout_steps
        oldest = end - count + 1 + self.warmup_steps
        if self.arrival_index is None or self.arrival_index < oldest:
            # the start of the data, or data the buffers no longer hold (not absorbed)
            self.arrival_index = oldest
        span = self.fit_span
        while last - (self.arrival_index + span) + 1 >= self.window_steps:
            self._absorb(self._window(self.arrival_index + span - 1, self.fit_steps))
            self.arrival_index += span
        # the newest chunk, still growing, is a whole window of received data ending at
        # the hold-out whose part before the chunk (fitted in the chunk before) weighs 0
        return [self._window(e, self.fit_steps, first=None if e == s + span - 1 else s)
                for s, e in self._carried_chunks(last)]

    def _carried_chunks(self, last):
        """(first, last) grid index of each chunk fitted beside the belief, newest first."""
        span = self.fit_span
        return [(s, min(s + span - 1, last))
                for s in reversed(range(self.arrival_index, last + 1, span))]

    def _walk(self, end, blocks):
        """
        Return the declared drift over the fitted chunks and since the belief, or None.

        An ``uncertainty.Walk``: ``blocks`` are the fit windows' block shares of J^T J
        (``Problem.normal``), the windows those of ``_carried_chunks``; the estimate is
        for grid index ``end``.
        """
        if not self.config.memory or not np.any(self.drift > 0):
            return None
        chunks = self._carried_chunks(end - self.holdout_steps)
        ages = [self.problem.block_ages(self.fit_steps, len(b)) + (end - e) * self.h
                for (_, e), b in zip(chunks, blocks)]
        return uncertainty.Walk(np.concatenate(blocks), np.concatenate(ages),
                                (end - self.arrival_index + 1) * self.h,
                                np.asarray(self.drift, dtype=float) ** 2 / 60.0)

    def _absorb(self, win):
        """Add a chunk leaving the window to the carried belief (then widened by drift)."""
        hess, grad, half, _, scores = self.problem.normal(self.z, win)
        scale = self._data_scale(half, win)
        info = None
        if self.envelope_noise is not None:
            # raw EMG: the envelope's error, correlated in time, leaves less than even the
            # scaled count says; the chunk carries at most what that error allows
            info = self.problem.envelope_information(self.z, [win], self.envelope_noise)
            if info is not None:
                scale *= posterior.cap(scale * hess, info)
        # the chunk's score spread goes with it (scaled as a cost scaled by ``scale``): the
        # belief's spread keeps the widening its residuals' correlation earned
        belief = posterior.widen(posterior.absorb(self.arrival, scale * hess, scale * grad,
                                                  self.z, scale ** 2 * np.asarray(scores)),
                                 self.drift, self.fit_span * self.h)
        if not posterior.usable(belief):
            # a diverging or non-finite belief is rolled back, never used
            self.arrival = self.good_arrival
            self.belief_rollbacks += 1
            return
        self.arrival = self.good_arrival = belief
        self.absorbed += 1
        if info is not None:
            self.carried_envelope = info if self.carried_envelope is None else \
                self.carried_envelope + info

    def _data_scale(self, half, wins):
        """
        Return the share of their count that data of cost ``half`` carry as information.

        Residuals above the noise level (unmodelled error, EMG noise) carry less than their
        count says: the information is scaled down by the residual variance.
        """
        return 1.0 / max(1.0, self.problem.mean_cost(half, wins) / NOISE_LEVEL)

    def _check_belief(self, prior, hess, grad, half, wins):
        """
        Return the carried belief, let go of where the newest data disagree with it.

        Early fits, far from the truth, are absorbed linearised where they stood, and a
        belief that later data contradict by more than its 1-sigma allows (a drift faster
        than declared, a wrong early basin) would hold the model back for minutes with a
        1-sigma far too small.  It is widened along the shift the data ask for until that
        shift is what its 1-sigma allows (``posterior.let_go``).
        """
        scale = self._data_scale(half, wins)
        check = posterior.consistency(prior, scale * hess, scale * grad, self.z)
        if not check.disagrees():
            return prior
        wide = posterior.let_go(prior, check)
        if wide is prior or not posterior.usable(wide):
            return prior
        self.beliefs_let_go += 1
        self.arrival = self.good_arrival = wide
        return wide

    # ------------------------------------------------------------------ session fits
    @property
    def archiving(self):
        """Say whether the session's data are archived for session fits (raw EMG)."""
        return (self.lowpass is not None and self.config.corrected_fit
                and self.envelope_noise is not None)

    @property
    def session_owned(self):
        """
        Say whether only session fits update the model (raw EMG, session fits on).

        The online shooting updates are biased on raw EMG: on the live bench, before the
        first session fit, they published models 20-35 % off for subjects whose template
        was 9-11 % off.  So the template stays until a session fit is adopted.
        """
        return self.archiving

    def archive_new(self):
        """Archive the chunks completed since the last call (no-op unless ``archiving``)."""
        if not self.archiving:
            return
        end, count = self.available()
        if count <= 0:
            return
        oldest = end - count + 1 + self.warmup_steps
        if self.archive_index is not None and self.archive_index < oldest:
            # the buffers no longer hold these data (taken in faster than archived)
            self.archive_lost += (oldest - self.archive_index) * self.h
        if self.archive_index is None or self.archive_index < oldest:
            self.archive_index = oldest
        span = self.fit_span
        while self.archive_index + span - 1 <= end:
            win = self._window(self.archive_index + span - 1, self.fit_steps)
            if self.tracker is not None:
                self.pending.append((self.archive.chunks, win))
            self.archive.add(win)
            self.archive_index += span
        if len(self.pending) > PENDING:
            self.pending_dropped += len(self.pending) - PENDING
            del self.pending[:-PENDING]

    def session_job(self):
        """Return the session fit due now (a SessionJob), or None."""
        self.archive_new()
        if not (self.enabled and self.archiving and self.archive.due()):
            return None
        chunks, entries = self.archive.start()
        return SessionJob(chunks, chunks * self.archive.span, [w for _, w in entries],
                          np.array(self.envelope_noise, dtype=float), float(self.lowpass),
                          tuple(k for k, _ in entries),
                          None if self.tracker is None else self.z.copy())

    def run_session_job(self, job):
        """
        Run a session fit (pure: any thread; returns a ``SessionFitted``).

        The corrected fit from the template over the job's windows, bones at the
        template's, like the offline final fit on raw EMG (``Problem.corrected_fit``).
        With memory also each window's corrected (hessian, gradient) at the fit, which the
        tracker starts from (``tracking.init``).
        """
        z0 = np.zeros(self.problem.space.size)
        variance = self.problem.corrected_variance(z0, job.windows, job.density, job.lowpass)
        z, _ = self.problem.corrected_fit(z0, job.windows, job.density, job.lowpass,
                                          variance=variance)
        z = np.asarray(z, dtype=float)
        if not self.config.memory or not np.all(np.isfinite(z)):
            return SessionFitted(z)
        correction = np.asarray(variance / (1.0 + variance))
        pieces = [tuple(np.asarray(x) for x in self.problem.corrected_normal(
            z, w, job.density, correction)) for w in job.windows]
        return SessionFitted(z, pieces, correction)

    def adopt_session(self, job, fitted, seconds=0.0):
        """
        Take a session fit (``SessionFitted``, or z) if valid and safe; returns an UpdateResult.

        Safe: on the data that arrived while it ran (held out from it; the newest hold-out
        window too if fewer than ``session_fit.HELD_OUT`` chunks came), its shooting error
        is no worse than the template's and, once a tracker carries the session, not more
        than ``session_fit.TRACKED_MARGIN`` worse than the tracked model as it was when the
        fit started (``job.tracked``; it had not seen those data either).  A later fit and
        the tracked model of the same data differed by 0.05-0.3 % on a hold-out window
        (10-minute raw session, fatigue); refused on any difference, no later fit was
        adopted and the lengths stayed where the first one (2 minutes of data) left them:
        muscle error 5.34 % at the end against 3.29 % with the later fits.

        With memory the candidate is the fit filtered over its windows under the declared
        drift (``tracking.init``; strengths at their newest values): the tracker carries on
        from it, its belief gives the 1-sigma values, and the chunks the fit did not see are
        tracked next (``track``).  Without, the candidate is the fit, and its analysis
        (with the envelope's information) gives them.
        """
        if not isinstance(fitted, SessionFitted):
            fitted = SessionFitted(np.asarray(fitted, dtype=float))
        tracker = self._session_tracker(job, fitted)
        z = fitted.z if tracker is None else tracker.belief.mean
        started = time.perf_counter()
        self.archive_new()
        held = self.archive.since(job.chunks)
        if len(held) < session_fit.HELD_OUT and self.ready():
            held = held + [self._window(self.available()[0],
                                        self.holdout_steps + self.warmup_steps)]
        data_time = (np.nan if self.encoders.origin is None else
                     self.encoders.origin + self.available()[0] * self.h)
        result = UpdateResult(False, '', data_time=data_time, session_seconds=job.seconds)
        result.reason = self._validity(z)
        if not result.reason and held:
            result.reason, result.holdout_before, result.holdout_after = \
                self.session_refusal(z, held, job.tracked)
        if result.reason:
            self.rejected += 1
            result = self._done(result, started)
            result.seconds += seconds
            return result
        hess, grad, half, count, scores = self.problem.normal(z, job.windows)
        result.fit_cost = self.problem.mean_cost(half, job.windows)
        self.z, self.good_z = z.copy(), z.copy()
        self.accepted += 1
        self.session_fits += 1
        self.posterior = posterior.absorb(self.problem.belief(), hess, grad, z)
        self._start_tracker(job, tracker)
        if tracker is None:
            self.last_analysis = self.problem.analyse(
                z, hess, half, count, external_torque=external_torque_rms(job.windows),
                scores=scores, wins=job.windows, envelope_noise=job.density)
        else:
            self.last_analysis = self.problem.analyse_belief(z, tracker.belief,
                                                             self.tracked_from[1])
            if np.isfinite(result.holdout_after):
                self.last_analysis.residual_sigma = float(np.sqrt(result.holdout_after))
        result.accepted, result.reason = True, 'accepted'
        result = self._done(result, started)
        result.seconds += seconds
        return result

    def session_refusal(self, z, held, tracked=None):
        """
        Return (why the session fit z is not safe or '', template's and z's cost on ``held``).

        See ``adopt_session``: no worse than the template on the held-out data, nor more
        than ``session_fit.TRACKED_MARGIN`` worse than the ``tracked`` model (z), if any.
        """
        before, after = self.problem.cost(np.zeros_like(z), held), self.problem.cost(z, held)
        if not after <= before:
            return 'the session fit fits the newest data worse than the template', before, after
        if tracked is not None and after > session_fit.TRACKED_MARGIN * self.problem.cost(
                tracked, held):
            return ('the session fit fits the newest data worse than the tracked model',
                    before, after)
        return '', before, after

    def _session_tracker(self, job, fitted):
        """
        Return the tracker a session fit starts (``tracking.init``), or None.

        None without the fit's pieces (memory off), with nothing to move, or when the
        filtered belief is not positive definite and finite.  Its mean is projected into
        the bounds.
        """
        mask = self.problem.space.mask(tracking.moves)
        if fitted.pieces is None or not job.numbers or not mask.any():
            return None
        span = self.archive.span
        gaps = span * np.diff(job.numbers, prepend=job.numbers[0])
        pieces = [(gap, hess, grad) for gap, (hess, grad) in zip(gaps, fitted.pieces)]
        try:
            tracker = tracking.init(self.problem.corrected_prior(), fitted.z, pieces,
                                    self.drift, fitted.correction, job.density, mask,
                                    fitted=self.problem.muscle_mask(),
                                    after=span * (job.chunks - 1 - job.numbers[-1]))
        except np.linalg.LinAlgError:
            return None
        if not posterior.usable(tracker.belief):
            return None
        return tracker._replace(belief=tracker.belief._replace(
            mean=self.problem.space.project(tracker.belief.mean)))

    def _start_tracker(self, job, tracker):
        """
        Carry on from an adopted session fit's tracker (None: drop the one there was).

        The chunks the fit did not see wait for it (the archive's, which past its limit
        keeps every stride-th: the drift counts the chunks between them).
        """
        self.tracker, self.pending, self.tracked_upto = None, [], None
        if tracker is None:
            return
        self.tracker, self.tracked_upto = tracker, job.chunks - 1
        # the samples the belief carries: the fit's, then one chunk's per chunk tracked
        self.tracked_from = (self.tracked, int(round(job.seconds / self.h)))
        unseen = [(k, w) for k, w in self.archive.entries if k >= job.chunks]
        self.pending_dropped += max(0, len(unseen) - PENDING)
        self.pending = unseen[-PENDING:]

    def tracking_due(self):
        """Say whether chunks wait for the tracker (raw EMG with memory, see ``track``)."""
        return self.tracker is not None and bool(self.pending) and self.enabled

    def track(self, started=None):
        """
        Move the tracker over the waiting chunks and publish its model if safe.

        ``tracking.step`` per chunk (the declared drift over the chunk's span); the
        belief's mean, projected into the bounds, is the candidate.  It is taken when valid
        and, on the newest hold-out data, no worse than the template (its shooting error,
        as a session fit is checked); the belief goes on either way.
        """
        started = time.perf_counter() if started is None else started
        span = self.fit_span * self.h
        tracker, reasons, count = self.tracker, [], len(self.pending)
        while self.pending:
            number, win = self.pending[0]
            # the drift over every chunk since the last one moved over (dropped ones too)
            tracker, reason = tracking.step(
                tracker, lambda z, w=win: self.problem.corrected_normal(
                    z, w, tracker.density, tracker.correction),
                self.drift, span * max(1, number - self.tracked_upto))
            tracker = tracker._replace(belief=tracker.belief._replace(
                mean=self.problem.space.project(tracker.belief.mean)))
            self.pending.pop(0)
            self.tracked_upto = number
            self.tracked += 1
            if reason:
                self.tracking_refused += 1
                reasons.append(reason)
        self.tracker = tracker
        end, _ = self.available()
        data_time = (np.nan if self.encoders.origin is None else
                     self.encoders.origin + end * self.h)
        z = np.where(tracker.mask, tracker.belief.mean, self.z)
        # the belief moved if any chunk was taken; if none was, say why
        result = UpdateResult(False, self._validity(z) or (
            reasons[-1] if len(reasons) == count else ''), data_time=data_time)
        if not result.reason and not self.ready():
            result.reason = 'no hold-out data to check the tracked model on'
        if not result.reason:
            held = self._window(end, self.holdout_steps + self.warmup_steps)
            result.holdout_before = self.problem.cost(np.zeros_like(z), held)
            result.holdout_after = self.problem.cost(z, held)
            if not result.holdout_after <= result.holdout_before:
                result.reason = 'the tracked model fits the newest data worse than the template'
        if result.reason:
            self.rejected += 1
            return self._done(result, started)
        self.z, self.good_z = z.copy(), z.copy()
        self.accepted += 1
        self.posterior = tracker.belief
        since, fitted = self.tracked_from
        self.last_analysis = self.problem.analyse_belief(
            z, tracker.belief, fitted + (self.tracked - since) * self.fit_span)
        if np.isfinite(result.holdout_after):
            self.last_analysis.residual_sigma = float(np.sqrt(result.holdout_after))
        result.accepted, result.reason = True, 'accepted'
        return self._done(result, started)

    def session_fit(self):
        """Run a due session fit here and now (a plain loop's ``update``); None if none."""
        job = self.session_job()
        if job is None:
            return None
        started = time.perf_counter()
        z = self.run_session_job(job)
        return self.adopt_session(job, z, time.perf_counter() - started)

    # ------------------------------------------------------------------ update
    def update(self):
        """Run one update if enough data are buffered; returns an UpdateResult."""
        started = time.perf_counter()
        if not self.enabled:
            return self._done(UpdateResult(False, 'identification disabled'), started)
        self.archive_new()
        if self.session_owned:
            if self.tracking_due():
                return self.track(started)
            return self._done(UpdateResult(False, SESSION_OWNED), started)
        if not self.ready():
            return self._done(UpdateResult(False, 'not enough data yet'), started)
        fit, hold = self.windows()
        end, _ = self.available()
        data_time = self.encoders.origin + end * self.h
        expected = (end - self.holdout_steps - self.arrival_index + 1 if self.config.memory
                    else sum(w.length for w in fit))
        if sum(float(np.sum(np.asarray(w.weight))) for w in fit) < 0.5 * expected:
            return self._done(UpdateResult(False, 'too many gaps in the window',
                                           data_time=data_time), started)
        self.restarts = strategy.on_data(self.restarts, len(fit), self.config.memory)
        prior = self.prior()
        before = self.problem.cost(self.z, hold)
        fits = [self._lm(self.z, fit, self.config.iterations, prior)]
        robust = self.restarts.needs_global
        if robust:
            start = strategy.start_point(self.restarts, self.z, self.problem.jitter_muscles)
            z0 = self.problem.initialise(start, fit, prior)
            # a robust start lands in the right basin but far down its slope: a few warm
            # iterations would leave it looking like a wrong basin (a high residual)
            fits.append(self._lm(z0, fit, strategy.ROBUST_ITERATIONS, prior))
        candidates = [state.z for state, _ in fits]
        costs = [self.problem.mean_cost(state.data_cost, fit)
                 if not self._validity(state.z) and np.isfinite(state.data_cost) else np.inf
                 for state, _ in fits]
        # with what earlier data carried, the best candidate is the best posterior
        ranking = [state.cost if np.isfinite(c) else np.inf
                   for (state, _), c in zip(fits, costs)] if self.config.memory else costs
        if not np.any(np.isfinite(costs)):
            self._rollback()
            self.restarts = strategy.on_rejection(self.restarts, robust=False)
            return self._done(UpdateResult(False, self._validity(candidates[0]) or
                                           'non-finite cost', data_time=data_time,
                                           robust_start=robust), started)
        best = int(np.argmin(ranking))
        z_new, fit_cost, stalled = candidates[best], costs[best], fits[best][1]
        after = self.problem.cost(z_new, hold)
        refused = self._refusal(z_new, after, before, hold, prior)
        if refused:
            self.rejected += 1
            self.restarts = strategy.on_rejection(self.restarts, robust)
            if refused == HELD_BACK:
                # the carried belief held the data back: see whether it claims too much
                hess, grad, half, _, _ = self.problem.normal(self.z, fit)
                self._check_belief(prior, hess, grad, half, fit)
            return self._done(UpdateResult(
                False, refused, fit_cost, before, after,
                data_time=data_time, robust_start=robust, stalled=stalled), started)
        self.z = z_new
        self.good_z = z_new.copy()
        self.accepted += 1
        self.restarts = strategy.on_accept(self.restarts, stalled, fit_cost, NOISE_LEVEL)
        hess, grad, half, count, scores, blocks = self.problem.normal(self.z, fit, blocks=True)
        if self.config.memory:
            prior = self._check_belief(prior, hess, grad, half, fit)
        self.posterior = posterior.absorb(prior, hess, grad, self.z)
        self.last_analysis = self.problem.analyse(
            self.z, hess, half, count, external_torque=external_torque_rms(fit), scores=scores,
            wins=fit, envelope_noise=self.envelope_noise,
            prior=prior if self.config.memory else None, carried_envelope=self.carried_envelope,
            walk=self._walk(end, blocks))
        return self._done(UpdateResult(True, 'accepted', fit_cost, before, after,
                                       data_time=data_time, robust_start=robust,
                                       stalled=stalled), started)

    def prior(self):
        """Return the next fit's prior: the carried belief (the template's without memory)."""
        return self.arrival if self.config.memory else self.problem.belief()

    def _refusal(self, z_new, after, before, hold, prior):
        """
        Why the candidate z_new is not taken ('' when it is).

        Without memory it must lower the error on the held-out newest data.  With memory
        it must lower what the posterior predicts there: the hold-out cost plus the carried
        belief's term (what earlier data say, so that the noise of one second does not
        move a well-determined model, while a drift the hold-out shows is followed); and
        it must not fit the hold-out worse than the template does.
        """
        if not np.isfinite(after):
            return 'non-finite hold-out error'
        if not self.config.memory:
            return '' if after < before else 'did not lower the hold-out error'
        hold_half = self.problem.half_cost
        new = hold_half(z_new, hold) + posterior.terms(prior, z_new)[2]
        old = hold_half(self.z, hold) + posterior.terms(prior, self.z)[2]
        if not new < old:
            return HELD_BACK
        if after > self.problem.cost(np.zeros_like(z_new), hold):
            return 'fits the held-out data worse than the template'
        return ''

    def _lm(self, z0, win, iterations, prior=None):
        """
        Run up to ``iterations`` LM iterations from z0, stopping once stalled.

        Returns (LMState, stalled): ``data_cost`` is at the state's z; stalled means the
        last iteration lowered the data cost by less than ``STALLED`` of it (or not at all).
        """
        state = solvers.lm_start(z0)
        stalled = False
        for _ in range(iterations):
            previous = state.data_cost
            state = self.problem.lm_step(state, win, prior)
            stalled = not state.accepted or bool(
                np.isfinite(previous) and previous - state.data_cost <= STALLED * previous)
            if stalled:
                break
        return state, stalled

    def _validity(self, z):
        """Reason the candidate cannot be used, or '' if it can."""
        if not np.all(np.isfinite(z)):
            return 'non-finite parameters'
        space = self.problem.space
        if np.any(z < space.wide_lower - 1e-9) or np.any(z > space.wide_upper + 1e-9):
            return 'parameters left their bounds'
        if np.any(np.abs(z - self.good_z) > EXPLODED):
            return 'parameters exploded'
        return self.problem.unphysical(z)

    def _rollback(self):
        self.z = self.good_z.copy()
        self.rejected += 1

    def _done(self, result, started):
        result.seconds = time.perf_counter() - started
        self.last_result = result
        return result

    # ------------------------------------------------------------------ output
    def current_file(self, extra_identification=None):
        """
        Return the last accepted model as a SubjectFile with 1-sigma values and a report.

        Its model (inside the template's bounds) is the one the node's torque path uses and
        publishes: there is no other form of an accepted model.
        """
        return subject_file(self.template, self.problem, self.z, self.last_analysis,
                            dict(self.identification_summary(), **(extra_identification or {})))

    def identification_summary(self):
        summary = {'window': self.config.window,
                   'chunk': self.config.chunk or self.config.window,
                   'period': self.config.period, 'holdout': self.config.holdout,
                   'accepted_updates': self.accepted, 'rejected_updates': self.rejected,
                   'buffer_resets': self.resets}
        if self.envelope_noise is not None:
            summary['envelope_noise_density'] = [float(v) for v in self.envelope_noise]
        if self.archiving:
            if self.tracker is not None:
                summary.update({'tracked_chunks': self.tracked,
                                'tracking_refused': self.tracking_refused,
                                'tracking_dropped': self.pending_dropped})
            summary.update({'session_fits': self.session_fits,
                            'session_archive_seconds': self.archive.seconds,
                            'session_archive_windows': len(self.archive.entries),
                            'session_archive_lost_seconds': self.archive_lost})
        if self.config.memory:
            summary.update({'memory': True, 'drift_pct_per_sqrt_min': dict(self.config.drift),
                            'absorbed_chunks': self.absorbed,
                            'carried_seconds': self.absorbed * self.fit_span * self.h,
                            'beliefs_let_go': self.beliefs_let_go,
                            'information_nats': self.information_gained(),
                            'median_sigma': self.median_sigma()})
        return summary

    def information_gained(self):
        """Return what the data determined beyond the template prior (nats)."""
        return posterior.gained(self.posterior, self.problem.belief())

    def median_sigma(self):
        """Median 1-sigma of the parameters (normalised units, about a fraction)."""
        if self.last_analysis is not None:
            return float(np.median(self.last_analysis.std_z))
        return float(np.median(self.posterior.std()))

    @property
    def fit_span(self):
        """Count fitted samples in one chunk (warm-up and hold-out excluded)."""
        return self.chunk_steps - self.holdout_steps

    @property
    def fit_steps(self):
        """Count samples in a fit window, one chunk (warm-up included)."""
        return self.fit_span + self.warmup_steps

    def compile(self):  # noqa: A003
        """Compile every jitted function for the window shapes (call before going live)."""
        steps_hold = self.holdout_steps + self.warmup_steps
        for steps in (self.fit_steps, steps_hold):
            win = _dummy_window(self.template.model, steps, self.history, self.h)
            self.problem.cost(self.z, win)
        fit = _dummy_window(self.template.model, self.fit_steps, self.history, self.h)
        hess, _, half, count, scores = self.problem.normal(self.z, fit)
        # the robust start works window by window: one pass on one window with one polish
        # iteration each compiles every shape it uses, whatever the count of windows
        self.problem.initialise(self.z, fit, iterations=1)
        # the solver's and the checks' small operations too, so that the first update
        # compiles nothing (the state is left as it was)
        self._validity(self._lm(self.z, fit, 1)[0].z)
        # raw EMG: the envelope-noise information too, on a stand-in density
        density = np.full(self.nm, 1e-3) if self.config.excitation_noise > 0 else None
        self.problem.analyse(self.z, hess, half, count, external_torque=external_torque_rms(fit),
                             scores=scores, wins=fit, envelope_noise=density)
        if density is not None and self.lowpass is not None and self.config.corrected_fit:
            self.problem.compile_corrected(fit, density, self.lowpass)


def external_torque_rms(wins):
    """RMS exoskeleton torque (N m) over the weighted samples of one or more windows."""
    wins = wins if isinstance(wins, (list, tuple)) else [wins]
    num = sum(float(np.sum(np.asarray(w.weight)[:, None] * np.asarray(w.tau_exo) ** 2))
              for w in wins)
    den = sum(float(np.sum(np.asarray(w.weight))) for w in wins) * np.asarray(
        wins[0].tau_exo).shape[1]
    return float(np.sqrt(num / max(den, 1e-12)))


def _fill(x):
    """Fill NaN rows by the nearest valid row (gaps carry zero weight anyway)."""
    x = np.array(x, dtype=float)
    bad = ~np.all(np.isfinite(x), axis=1)
    if not bad.any():
        return x
    good = np.flatnonzero(~bad)
    if good.size == 0:
        return np.zeros_like(x)
    idx = np.clip(np.searchsorted(good, np.arange(len(x))), 0, good.size - 1)
    x[bad] = x[good[idx[bad]]]
    return x


def _dummy_window(model, steps, history, h):
    rng = np.asarray(model.skeleton.joint_range)
    t = np.arange(steps) * h
    q = rng.mean(axis=1)[None, :] + 0.3 * np.sin(2 * np.pi * 0.5 * t)[:, None]
    qd = 0.3 * np.pi * np.cos(2 * np.pi * 0.5 * t)[:, None] * np.ones((1, rng.shape[0]))
    emg = 0.1 + 0.05 * np.sin(np.arange(steps + history) * h)[:, None] * np.ones(
        (1, model.n_muscles))
    return from_arrays(q, np.zeros_like(q), emg, h, qd=qd, history=history)
