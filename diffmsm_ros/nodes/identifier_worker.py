"""
The online identifier on its own thread, fed through one bounded queue.

The worker's owner hands it lists of ``identifier_messages`` (data and commands, in the
order they were sent) through one bounded queue, ``inbox``: in the identifier process the
queue the node fills (``IdentifierProcess``), elsewhere one of its own that ``take`` and
``put_*`` fill from any thread, never blocking.  The worker thread takes every batch that
waits, moves the data into the OnlineIdentifier and carries out the commands in order, runs
an update every ``period`` seconds of data and reports each result to ``on_result`` (and
each accepted model, as the ``SubjectFile`` it is published as, to ``on_model``).  When the
queue is full the batch that does not fit is dropped and counted by whoever put it, so
memory stays bounded whatever the input rate: one queue, not one per hand-over.

Raw EMG (``lowpass`` given): a session fit (``identify/session_fit.py``) runs on a thread
of its own when one is due, over the session archived so far, while this thread goes on
taking data in and archiving it; session fits alone update the model (no online updates),
and with memory, after the first one, the tracker moves it chunk by chunk
(``identify/tracking.py``) as the chunks are archived.
"""

import dataclasses
import queue
import threading
import time
import traceback

from diffmsm_ros.identify.online import OnlineIdentifier
from diffmsm_ros.nodes.identifier_messages import (
    Enable, Encoders, Excitations, Iterations, Period, Reset, Stop)

QUEUE_BATCHES = 20000   # batches waiting in a queue of the worker's own
ARCHIVE_EVERY = 1000    # samples taken in between archiving (raw EMG's session fits)
TAKE_AT_ONCE = 500      # batches taken before the updates get their turn (10 s of data)
POLL = 0.05             # s between looks at a running session fit while no data come


class IdentifierWorker:
    """Thread owning an OnlineIdentifier (see the module docstring)."""

    def __init__(self, template, config, on_result=None, on_model=None, log=None,
                 lowpass=None, inbox=None):
        """``inbox``: the queue of message lists to read (default: one of its own)."""
        self.ident = OnlineIdentifier(template, config, lowpass=lowpass)
        self.period = config.period
        self.on_result = on_result
        self.on_model = on_model
        self.log = log or (lambda text: None)
        self.inbox = queue.Queue(QUEUE_BATCHES) if inbox is None else inbox
        self.dropped = 0                # batches that did not fit (``take``)
        self.updates = 0
        self.last_seconds = float('nan')
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_update = None
        self._newest = None
        self._taken = 0                 # samples taken since the last archiving
        self._updating = False          # an update (or tracking) runs on the worker thread
        self._session = None            # the session fit's thread, while one runs
        self._session_result = None     # (generation, job, z or None, seconds)
        self._generation = 0            # resets so far: a fit from before one is dropped
        self.thread = threading.Thread(target=self._run, name='diffmsm-identifier',
                                       daemon=True)

    # ------------------------------------------------------------------ from other threads
    def compile(self):  # noqa: A003 - jax.jit vocabulary
        """Compile the identifier's jitted functions (call before start)."""
        self.ident.compile()

    def start(self):
        self.thread.start()

    def stop(self, timeout=10.0):
        """Stop the worker thread, and wait for a running session fit, ``timeout`` s each."""
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)
        session = self._session
        if session is not None and session.is_alive():
            # a session fit still in compiled code when the interpreter exits aborts it
            session.join(timeout)

    def take(self, message):
        """Queue a message of ``identifier_messages`` (any thread; counted if it does not fit)."""
        try:
            self.inbox.put_nowait([message])
        except queue.Full:
            self.dropped += 1

    def put_encoders(self, t, q, qd, tau):
        """Queue one encoder sample (t s, q rad, qd rad/s or None, tau N m)."""
        self.take(Encoders(Encoders.row(t, q, qd, tau)[None, :]))

    def put_excitations(self, t, u, envelope_noise=None):
        """Queue excitations u [S, nm] at times t [S] (s); raw EMG's S0 per muscle, if any."""
        rows = Excitations.rows_of(t, u)
        self.take(Excitations(rows, envelope_noise))

    def current_file(self):
        """Return the last accepted model as a SubjectFile (thread-safe)."""
        with self._lock:
            return self.ident.current_file()

    # ------------------------------------------------------------------ worker thread
    def _run(self):
        while not self._stop.is_set():
            try:
                batches = self._waiting()
            except (EOFError, OSError):      # the queue's other end is gone
                return
            try:
                resets = self.ident.resets
                for batch in batches:
                    for message in batch:
                        self._handle(message)
                if self.ident.resets != resets:       # the buffers started afresh
                    self._next_update = None
                if not self._stop.is_set():
                    self._step()
            except Exception as err:  # noqa: B902 - the worker must survive a bad update
                self.errors += 1
                self.log(f'identifier error: {err!r}\n{traceback.format_exc(limit=3)}')
                with self._lock:
                    self.ident.z = self.ident.good_z.copy()

    def _waiting(self):
        """Return the batches waiting (up to ``TAKE_AT_ONCE``), after up to ``POLL`` s."""
        try:
            batches = [self.inbox.get(timeout=POLL)]
        except queue.Empty:
            return []
        while len(batches) < TAKE_AT_ONCE:
            try:
                batches.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batches

    def _handle(self, message):
        """Carry out one message: data into the identifier, or a command, in order."""
        ident = self.ident
        if isinstance(message, Encoders):
            for sample in message.samples():
                ident.add_encoders(*sample)
                self._newest = sample[0]
                self._archive_now_and_then()
        elif isinstance(message, Excitations):
            ident.add_excitations(message.times, message.values)
            if message.noise is not None:
                ident.envelope_noise = message.noise
            self._archive_now_and_then()
        elif isinstance(message, Enable):
            ident.enabled = bool(message.enabled)
        elif isinstance(message, Period):
            self.period = float(message.seconds)
        elif isinstance(message, Iterations):
            with self._lock:
                ident.config = dataclasses.replace(ident.config, iterations=message.count)
        elif isinstance(message, Reset):
            with self._lock:
                self._generation += 1
                ident.reset()
                self._next_update = None
                self._newest = None
        elif isinstance(message, Stop):
            self._stop.set()
        else:
            self.errors += 1
            self.log(f'the identifier does not take {message!r}')

    def _archive_now_and_then(self):
        """Archive every ``ARCHIVE_EVERY`` items: a backlog may be longer than the buffers."""
        self._taken += 1
        if self._taken >= ARCHIVE_EVERY:
            self._taken = 0
            self.ident.archive_new()

    def _step(self):
        """After the data taken: archive, session fits, and an update when one is due."""
        if self._newest is None:
            return
        self.ident.archive_new()        # raw EMG: every chunk, also while a session fit runs
        self._session_step()
        if self.ident.session_owned:
            # raw EMG: after a session fit the tracker moves the model chunk by chunk
            if self.ident.tracking_due():
                self._update()
            return
        if self._session is not None:
            return
        if self._next_update is None or self._newest < self._next_update - 2 * self.period:
            self._next_update = self._newest + self.period
        if self._newest < self._next_update or not self.ident.enabled:
            return
        self._next_update = self._newest + self.period
        self._update()

    @property
    def busy(self):
        """Say whether an update or a session fit runs."""
        return self._updating or self._session is not None

    def _update(self):
        self._updating = True
        started = time.perf_counter()
        with self._lock:
            result = self.ident.update()
        self._updating = False
        if result.reason == 'not enough data yet':
            return
        result.seconds = time.perf_counter() - started
        self._report(result)

    def _session_step(self):
        """Adopt a finished session fit; start the next one when it is due."""
        if self._session is not None and self._session_result is not None:
            generation, job, z, seconds = self._session_result
            self._session = self._session_result = None
            if z is not None and generation == self._generation:
                with self._lock:
                    result = self.ident.adopt_session(job, z, seconds)
                self._report(result)
        if self._session is None and self.ident.enabled:
            with self._lock:
                job = self.ident.session_job()
            if job is not None:
                self._session = threading.Thread(
                    target=self._run_session, args=(job, self._generation),
                    name='diffmsm-session-fit', daemon=True)
                self._session.start()

    def _run_session(self, job, generation):
        started = time.perf_counter()
        z = None
        try:
            z = self.ident.run_session_job(job)
        except Exception as err:  # noqa: B902 - a failed fit leaves the model as it was
            self.errors += 1
            self.log(f'session fit error: {err!r}\n{traceback.format_exc(limit=3)}')
        self._session_result = (generation, job, z, time.perf_counter() - started)

    def _report(self, result):
        self.updates += 1
        self.last_seconds = result.seconds
        if self.on_result is not None:
            self.on_result(result)
        if result.accepted and self.on_model is not None:
            self.on_model(self.current_file())
