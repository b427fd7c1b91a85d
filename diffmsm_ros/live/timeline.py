"""
The node's input time line without ROS: for every encoder sample a torque or a reason.

EMG and encoder samples come in; every encoder sample gets either a torque or the reason
it was withheld.

``on_emg`` takes an EMG chunk as it arrives (``on_emg_stamped`` one that carries its own
stamp); ``on_encoder`` takes an encoder sample and answers with a ``Torque`` or a
``Withheld``.  Messages taken together (a node that fell behind) are handed in one by one
in publish order with ``admit`` for the encoder samples, then ``answer`` applies the EMG
and computes all their torques in one batch: an encoder sample then sees the EMG that came
with it (never less than one by one), at a fraction of the cost per sample.  In between this module

- checks stamps: a stamp far in the future of the node's clock is refused, one not after
  the previous sample is a repeat, one more than ``BACKWARD_TOLERANCE`` back is a restart
  (a bag playing again) that clears the streams;
- puts EMG on the encoders' time line as it arrives: a chunk's publish time (from the
  middleware) is carried on from the newest encoder sample published before it (stamp
  plus the time since, at the rate stamps advance), so processing order and lag do not
  move it; a chunk of several samples is laid on a sample clock at the declared rate
  (``EmgIntake.times``); so are samples sent one per message while their stream is
  steady (next to no messages lost), at the declared rate when the measured one agrees
  with it, else at the measured rate; otherwise they keep their own publish times;
- compensates the raw-EMG envelope filter's lag (``EmgIntake.lag``) once, for both the
  torque path and the identifier: the envelope computed at t is the excitation at t - lag;
- estimates velocity when the encoders send none (``CausalVelocity``);
- withholds the torque when the EMG is older than ``stale_timeout`` on the encoders' time
  line, drops (and counts) samples that reach it later than ``deadline`` after they were
  published, and counts encoder samples that never arrived (gaps in the stamps);
- measures input rates over the last ``RATE_SPAN`` s of stamps and says, with the
  parameter to set, when the EMG disagrees with its declared rate.

Every bad input is counted by kind and code and remembered for the status.
"""

import collections
import dataclasses
import math
import time
import typing

from diffmsm_ros.bad_input import BadInput
from diffmsm_ros.emg.intake import EmgError
from diffmsm_ros.live.velocity import CausalVelocity
import numpy as np

BACKWARD_TOLERANCE = 0.05   # s: an encoder stamp older than this is a restart, not jitter
FUTURE_TOLERANCE = 1.0      # s: stamps further ahead of the node's clock are refused
ENCODER_WALLS = 200         # recent (publish wall time, stamp) pairs of encoder samples
PENDING_EMG = 1000          # EMG chunks waiting to be read
WALL_SPAN = 0.1             # s of encoder publish times that give the stamp rate
RATE_SPAN = 2.0             # s of stamps over which input rates are measured
RATE_MIN_SPAN = 1.0         # s of stamps before a rate is judged
RATE_ENTRIES = 5000         # messages kept per input for the rate (bounds memory)
GAP = 1.5                   # encoder periods between stamps that mean samples went missing
BURST = 0.75                # encoder periods between stamps that mean a burst (a catch-up)
PERIODS = 64                # encoder periods whose median gives the encoder period
NOISE_PERIOD = 1.0          # s of EMG between raw-EMG noise readings sent to the identifier
AGES = 2000                 # recent EMG ages (at encoder samples) kept for the status
SPACINGS = 500              # recent one-sample EMG messages that give their sampling rate
EDGE = 50                   # of those, at either end, among which the least late is taken
STEADY = 0.02               # relative difference of that spacing from the measured period
CLOCK_CHECK = 100           # one-sample EMG messages between choices of their clock rate


@dataclasses.dataclass(frozen=True)
class TimelineConfig:
    """Timing settings (s, Hz); a rate of 0 is not checked."""

    stale_timeout: float = 0.1
    deadline: float = 0.05
    velocity_window: float = 0.04
    encoder_rate: float = 0.0
    emg_rate: float = 0.0            # expected EMG samples per second (0: the declared)
    rate_tolerance: float = 0.2      # relative rate error that is reported


class Torque(typing.NamedTuple):
    """What the node publishes for one encoder sample (SI units)."""

    stamp: int              # ns, the encoder sample's
    q: np.ndarray           # rad
    qd: np.ndarray          # rad/s (measured, or estimated)
    torque: np.ndarray      # N m, net muscle torque per joint
    activation: np.ndarray
    fibre_velocity: np.ndarray
    force: np.ndarray       # N, pulling > 0


class Asked(typing.NamedTuple):
    """An encoder sample admitted for a torque (``InputTimeline.admit``)."""

    stamp: int              # ns
    t: float                # s on the session clock
    q: np.ndarray           # rad
    qd: np.ndarray          # rad/s (measured, or estimated)


class Withheld(typing.NamedTuple):
    """No torque for this encoder sample, and why (``WITHHELD`` keys)."""

    reason: str


WITHHELD = {'bad': 'bad input', 'stale': 'EMG older than stale_timeout',
            'late': 'later than the deadline', 'nonfinite': 'non-finite torque',
            'no_emg': 'no EMG yet'}


class RateMeter:
    """
    Samples per second over the last ``RATE_SPAN`` s of stamps.

    Kept in two fixed rings (time, samples) read with numpy: the diagnostics read it under
    the time line's lock, which the torque path waits for (a loop over the entries took
    0.5-1.7 ms a status at 1 kHz).
    """

    def __init__(self):
        self.times = np.zeros(RATE_ENTRIES)
        self.samples = np.zeros(RATE_ENTRIES)
        self.count = 0                # entries ever added since the last clear

    def add(self, t, samples):
        i = self.count % RATE_ENTRIES
        self.times[i] = t
        self.samples[i] = samples
        self.count += 1

    def clear(self):
        self.count = 0

    def recent(self, count=RATE_ENTRIES):
        """Return the last ``count`` entries (at most those kept), oldest first."""
        n = min(count, self.count, RATE_ENTRIES)
        idx = (self.count - n + np.arange(n)) % RATE_ENTRIES
        return self.times[idx], self.samples[idx]

    def steady_rate(self):
        """
        Return the sampling rate (Hz) of one-sample messages from their times, or NaN.

        Publish times are late by the publisher's stalls, never early: the period is the
        slope between the least late of the first and of the last ``EDGE`` messages of the
        last ``SPACINGS``.  NaN when they are too few, or when the median spacing is not
        that period within ``STEADY`` (messages lost: their count is not the samples').
        """
        t, _ = self.recent(SPACINGS)
        if len(t) < SPACINGS:
            return float('nan')
        spacing = float(np.median(np.diff(t)))
        left = t - spacing * np.arange(len(t))
        i0 = int(np.argmin(left[:EDGE]))
        i1 = len(t) - EDGE + int(np.argmin(left[-EDGE:]))
        period = spacing + (left[i1] - left[i0]) / (i1 - i0)
        if not period > 0 or abs(spacing / period - 1.0) > STEADY:
            return float('nan')
        return 1.0 / period

    def rate(self):
        """
        Return samples per second (NaN until ``RATE_MIN_SPAN`` s of stamps are in).

        Over the entries after the newest one more than ``RATE_SPAN`` s older than the
        newest; the samples of the first of them are not counted (they came before the span
        starts).
        """
        t, n = self.recent()
        if len(t) < 2:
            return float('nan')
        older = np.flatnonzero(t < t[-1] - RATE_SPAN)
        first = older[-1] + 1 if older.size else 0
        span = t[-1] - t[first]
        if span < RATE_MIN_SPAN:
            return float('nan')
        return float(n[first + 1:].sum()) / span


class InputTimeline:
    """EMG and encoder samples to torques (see the module docstring)."""

    def __init__(self, config, intake, torque, sink=None, log=None):
        self.config = config
        self.intake = intake
        self.torque = torque
        self.sink = sink
        self.to_sink = []             # samples for the identifier, handed over by ``feed``
        self.log = log or (lambda level, text, key: None)
        self.velocity = CausalVelocity(config.velocity_window)
        self.velocity.compile()
        self.t_ref = None
        self.pending = collections.deque(maxlen=PENDING_EMG)
        self.walls = collections.deque(maxlen=ENCODER_WALLS)
        self.periods = []
        self.period = None            # s, the encoders' sample period
        self.owed = 0                 # samples counted missing that a burst may still bring
        self.rates = {'encoders': RateMeter(), 'emg': RateMeter()}
        self.counts = collections.Counter()
        self.bad = {}                 # input kind -> (last reason, monotonic s)
        self.last_encoder = None      # ns, the previous encoder stamp
        self.emg_newest = None        # s, newest EMG sample received (before lag)
        self.emg_applied = None       # s, newest EMG sample applied (before lag)
        self.asked = []               # encoder samples admitted, not yet answered
        self.answered = []            # answers not yet handed out (asked before a restart)
        self.noise_sent_at = None
        self.receipt = {}             # input kind -> monotonic s of its last message
        self.stale = False
        self.longest_wait = 0.0       # s, the longest a sample waited for the node
        self.lost_at = None           # monotonic s of the last sample late or missing
        self.emg_ages = collections.deque(maxlen=AGES)   # s: encoder time - newest EMG
        self.clock_rate = None        # Hz of one-sample EMG messages' clock (None: own times)
        self.clock_check = 0          # such messages until that rate is chosen again

    # ------------------------------------------------------------------ time
    def seconds(self, ns):
        """Session seconds of a time in ns (relative to a whole-second reference)."""
        if self.t_ref is None:
            self.t_ref = (int(ns) // 1_000_000_000) * 1_000_000_000
        return (int(ns) - self.t_ref) * 1e-9

    def bad_input(self, kind, error):
        """Count and remember an unusable ``kind`` message (a ``BadInput``)."""
        self.counts[f'bad_{kind}'] += 1
        self.counts[f'bad_{kind}.{error.code}'] += 1
        self.bad[kind] = (str(error), time.monotonic())
        self.log('warning', f'{kind}: {error} (message ignored)', kind)

    # ------------------------------------------------------------------ EMG
    def on_emg(self, samples, now_ns, published_ns=None):
        """
        Take an EMG chunk [S, C] received now (node clock ns; publish wall ns if known).

        Checked now and queued; ``flush`` (and every torque) applies what is queued.
        """
        if published_ns is not None and self.walls:
            receipt = self._wall_stamp(published_ns)
        elif now_ns > 0:
            receipt = now_ns
        else:
            # use_sim_time and no /clock yet: the receipt time means nothing
            self.bad_input('emg', BadInput('no clock yet (use_sim_time without /clock)',
                                           'no_clock'))
            return
        samples = self._checked(samples)
        if samples is None:
            return
        self.receipt['emg'] = time.monotonic()
        t = self.seconds(receipt)
        self.rates['emg'].add(t, len(samples))
        if len(samples) == 1:
            rate = self._one_sample_clock()
            times = self.intake.times(t, 1, stamped=rate is None, rate=rate)
        else:
            times = self.intake.times(t, len(samples))
        self._queue(times, samples)

    def _one_sample_clock(self):
        """
        Choose the clock rate (Hz) for EMG one sample per message (None: their own times).

        A sample's publish time is as late as its publisher was (a stall of a few ms
        under load), so samples of a steady stream are laid on a clock as chunks are
        (steady: the median spacing of recent messages is one period of their rate, so
        next to none are lost and the count gives the sampling rate): at the declared
        rate when the measured one agrees with it, else at the measured rate.  None
        until enough messages are in, or while messages go missing (a clock would put
        every sample after a lost one a period early).  Chosen again every
        ``CLOCK_CHECK`` messages.
        """
        self.clock_check -= 1
        if self.clock_check > 0:
            return self.clock_rate
        self.clock_check = CLOCK_CHECK
        steady, declared = self.rates['emg'].steady_rate(), self.intake.rate
        if not math.isfinite(steady):
            self.clock_rate = None
        elif abs(steady - declared) <= self.config.rate_tolerance * declared:
            self.clock_rate = declared
        else:
            self.clock_rate = steady
        return self.clock_rate

    def on_emg_stamped(self, stamp_ns, samples):
        """Take an EMG sample [1, C] that carries its own stamp (ns); queued as ``on_emg``."""
        samples = self._checked(samples)
        if samples is None:
            return
        times = self.intake.times(self.seconds(stamp_ns), len(samples), stamped=True)
        self.rates['emg'].add(times[-1], len(samples))
        self.receipt['emg'] = time.monotonic()
        self._queue(times, samples)

    def _checked(self, samples):
        try:
            return self.intake.check(samples)
        except EmgError as err:
            self.bad_input('emg', err)
            return None

    def _queue(self, times, samples):
        self.pending.append((times, samples))
        self.emg_newest = float(times[-1])

    def _wall_stamp(self, published):
        """
        Return the encoder stamp (ns) of publish time ``published`` (wall ns).

        Between encoder samples it is interpolated between theirs; after the newest one it
        is carried on from it at the rate stamps advance against publish times (1 live,
        the replay rate in a replay) over the last ``WALL_SPAN``.
        """
        walls = self.walls
        w1, s1 = walls[-1]
        if published <= w1:
            return _interpolate_stamp(walls, published)
        w0, s0 = walls[0]
        slope = (s1 - s0) / (w1 - w0) if w1 - w0 >= WALL_SPAN * 1e9 else 1.0
        return s1 + int(round((published - w1) * slope))

    def flush(self):
        """
        Apply the queued EMG: filtered together, on the torque path and to the identifier.

        Chunks that follow one another are joined (one filter and one torque-path update
        for all the EMG that waited together); one that starts back in time restarts the
        torque path's activation.
        """
        lag = self.intake.lag
        while self.pending:
            times, samples = [self.pending[0][0]], [self.pending.popleft()[1]]
            while self.pending and self.pending[0][0][0] > times[-1][-1]:
                chunk_times, chunk = self.pending.popleft()
                times.append(chunk_times)
                samples.append(chunk)
            times = np.concatenate(times) if len(times) > 1 else times[0]
            samples = np.concatenate(samples) if len(samples) > 1 else samples[0]
            u = self.intake.excitations(samples, checked=True)
            if self.emg_applied is not None and \
                    times[0] < self.emg_applied - BACKWARD_TOLERANCE:
                self.torque.reset()
            shifted = times - lag
            self.torque.add_excitations(shifted, u)
            if self.sink is not None:
                self.to_sink.append((self.sink.put_excitations,
                                     (shifted, u, self._noise_reading(times))))
            self.emg_applied = float(times[-1])

    def _noise_reading(self, times):
        """Raw EMG's noise density for the identifier, once per ``NOISE_PERIOD``; else None."""
        if self.intake.filter is None:
            return None
        if self.noise_sent_at is not None and \
                0 <= times[-1] - self.noise_sent_at < NOISE_PERIOD:
            return None
        density = self.intake.noise_density
        if density is not None:
            self.noise_sent_at = float(times[-1])
        return density

    # ------------------------------------------------------------------ encoders
    def on_encoder(self, stamp, q, qd, tau, now_ns=0, published_ns=None, wall_ns=None):
        """
        One encoder sample (stamp ns; q rad, qd rad/s or None, tau N m): Torque or Withheld.

        ``now_ns`` is the node clock (0: unknown), ``published_ns`` the sample's publish
        time and ``wall_ns`` the wall clock now (both ns, for the deadline).
        """
        withheld = self.admit(stamp, q, qd, tau, now_ns, published_ns, wall_ns)
        out = withheld or self.answer()[-1]
        self.feed()
        return out

    def admit(self, stamp, q, qd, tau, now_ns=0, published_ns=None, wall_ns=None):
        """
        Check and record a sample as ``on_encoder`` does: a ``Withheld``, or None (asked).

        Samples taken together are admitted one by one, then ``answer`` gives the torques
        of all that were asked in one batch.
        """
        if now_ns > 0 and stamp > now_ns + FUTURE_TOLERANCE * 1e9:
            self.bad_input('joint_states', BadInput('stamp is in the future of the node '
                                                    'clock', 'future_stamp'))
            return Withheld('bad')
        last = self.last_encoder
        if last is not None and stamp <= last:
            if stamp < last - BACKWARD_TOLERANCE * 1e9:
                self.restart()
                last = None
            else:
                self.bad_input('joint_states', BadInput('stamp not after the previous '
                                                        'sample', 'repeated_stamp'))
                return Withheld('bad')
        if last is not None:
            self._count_gap((stamp - last) * 1e-9)
        self.last_encoder = stamp
        t = self.seconds(stamp)
        self.counts['encoders'] += 1
        self.rates['encoders'].add(t, 1)
        self.receipt['encoders'] = time.monotonic()
        if published_ns is not None:
            self.walls.append((published_ns, stamp))
        self.velocity.push(t, q)
        if self.sink is not None:
            self.to_sink.append((self.sink.put_encoders, (t, q, qd, tau)))
        if published_ns is not None and wall_ns is not None:
            wait = (wall_ns - published_ns) * 1e-9
            self.longest_wait = max(self.longest_wait, wait)
            if wait > self.config.deadline:
                return self._withhold('late')
        if self.emg_newest is None:
            return self._withhold('no_emg')
        age = t - self.emg_newest
        self.emg_ages.append(age)
        self.stale = age > self.config.stale_timeout
        if self.stale:
            return self._withhold('stale')
        if qd is None:
            qd = self.velocity.estimate()
        self.asked.append(Asked(stamp, t, q, qd))
        return None

    def feed(self):
        """
        Hand the samples taken since the last call to the identifier (the ``sink``).

        The node calls it after publishing the torques: the identifier's bookkeeping (about
        40 us a sample in the node) is then not part of the torque's latency.
        """
        items, self.to_sink = self.to_sink, []
        for put, args in items:
            put(*args)

    def answer(self):
        """Return a ``Torque`` (or ``Withheld``) for each sample asked since the last answer."""
        answers, self.answered = self.answered + self._answer(self.asked), []
        self.asked = []
        return answers

    def _answer(self, asked):
        """Answers to ``asked``, the queued EMG applied first."""
        if not asked:
            return []
        self.flush()
        outputs = self.torque.at_many([a.t for a in asked], [a.q for a in asked],
                                      [a.qd for a in asked])
        answers = []
        for a, out in zip(asked, outputs):
            if out is None:
                answers.append(self._withhold('no_emg'))
            elif not out.finite:
                answers.append(self._withhold('nonfinite'))
            else:
                self.counts['torque_published'] += 1
                answers.append(Torque(a.stamp, a.q, a.qd, out.torque, out.activation,
                                      out.fibre_velocity, out.force))
        return answers

    def _withhold(self, reason):
        self.counts[f'withheld_{reason}'] += 1
        if reason == 'late':
            self.lost_at = time.monotonic()
        return Withheld(reason)

    def _count_gap(self, dt):
        """
        Count encoder samples missing between two stamps dt (s) apart.

        Stamps may come in bursts: a source that stalled and then sends the samples it held
        back stamped as it sends them (close together after a long step).  So a long step
        counts its missing samples provisionally, and each sample of the burst right after
        it (closer than ``BURST`` periods to the one before) repays one of them: a stall
        and its catch-up count nothing, samples that never come stay counted (the first
        ordinary step ends the repaying).  The period is the median of the steps that are
        not burst steps.
        """
        period = self.period
        if period is not None and dt > GAP * period:
            missing = int(round(dt / period)) - 1
            self.counts['encoder_gaps'] += missing
            self.owed += missing
            self.lost_at = time.monotonic()
            return
        if period is not None and dt < BURST * period:
            if self.owed:
                self.owed -= 1
                self.counts['encoder_gaps'] -= 1
            return
        self.owed = 0
        periods = self.periods
        periods.append(dt)
        # the median of the periods since the last reading, renewed every PERIODS samples
        if len(periods) >= PERIODS or (period is None and len(periods) >= 8):
            self.period = float(np.median(periods))
            if len(periods) >= PERIODS:
                periods.clear()

    def restart(self):
        """Time went backwards (a bag playing again): start the streams afresh."""
        # samples asked before the jump are answered from the stream they belong to
        self.answered += self._answer(self.asked)
        self.asked = []
        self.counts['time_jumps'] += 1
        self.log('warning', 'encoder time jumped backwards: buffers cleared', 'restart')
        self.reset()

    def reset(self):
        """
        Back to no data at all (also the node's reset service).

        EMG still waiting was published before the sample that jumped back (messages are
        handled in publish order): it belongs to the stream before the jump.  So do the
        samples not yet handed to the identifier: a reset must not reach it before them.
        """
        self.pending.clear()
        self.asked = []
        self.to_sink = []
        self.intake.reset()
        self.walls.clear()
        self.periods.clear()
        self.period = None
        self.owed = 0
        self.torque.reset()
        self.velocity.reset()
        self.last_encoder = None
        self.emg_newest = None
        self.emg_applied = None
        for meter in self.rates.values():
            meter.clear()
        self.clock_rate = None
        self.clock_check = 0

    # ------------------------------------------------------------------ status
    def rate_problems(self):
        """[(level, text)] for input rates that disagree with what is declared."""
        out = []
        cfg = self.config
        declared = self.intake.rate
        expected = {'encoders': cfg.encoder_rate, 'emg': cfg.emg_rate or declared}
        for kind, want in expected.items():
            measured = self.rates[kind].rate()
            if not (want > 0 and math.isfinite(measured)) or \
                    abs(measured - want) <= cfg.rate_tolerance * want:
                continue
            if kind == 'emg' and not cfg.emg_rate:
                meanwhile = '' if self.clock_rate in (None, declared) else \
                    ' (one sample per message: laid at the measured rate meanwhile)'
                out.append(('ERROR', f'EMG arrives at {measured:.0f} samples/s per channel '
                            f'but emg.sample_rate is {declared:g} Hz: set emg.sample_rate '
                            'to the rate the EMG is sampled at (or look for lost EMG '
                            f'messages){meanwhile}'))
            else:
                name = 'rates.encoders' if kind == 'encoders' else 'rates.emg'
                out.append(('WARN', f'{kind} at {measured:.0f} Hz, expected {want:g} '
                            f'({name})'))
        return out


def _interpolate_stamp(walls, wall):
    """Interpolate the encoder stamp (ns) at publish time ``wall`` from (wall, stamp)."""
    newer = None
    for w0, s0 in reversed(walls):      # newest first: the chunk is almost always recent
        if w0 <= wall:
            if newer is None:
                return s0
            w1, s1 = newer
            if w1 == w0:
                return s1
            return s0 + int(round((s1 - s0) * (wall - w0) / (w1 - w0)))   # ns, exact
        newer = (w0, s0)
    return walls[0][1]
