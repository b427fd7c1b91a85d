"""
The online identifier on its own thread, fed through a bounded queue.

The torque path hands over encoder samples and excitations (``put_*``, never blocking);
the worker moves them into the OnlineIdentifier, runs an update every ``period`` seconds of
data and reports each result to ``on_result`` (and each accepted model, as the
``SubjectFile`` it is published as, to ``on_model``).  The queue has a fixed size: if the
identifier falls behind, the oldest items are dropped and counted, so memory stays bounded
whatever the input rate.

Raw EMG (``lowpass`` given): a session fit (``identify/session_fit.py``) runs on a thread
of its own when one is due, over the session archived so far, while this thread goes on
taking data in and archiving it; session fits alone update the model (no online updates),
and with memory, after the first one, the tracker moves it chunk by chunk
(``identify/tracking.py``) as the chunks are archived.
"""

import collections
import dataclasses
import threading
import time
import traceback

from diffmsm_ros.identify.online import OnlineIdentifier
from diffmsm_ros.nodes.identifier_messages import (
    Enable, Encoders, Excitations, Iterations, Period, Reset)

QUEUE_ITEMS = 20000     # encoder samples + EMG chunks waiting for the worker
ARCHIVE_EVERY = 1000    # items taken in between archiving (raw EMG's session fits)


class IdentifierWorker:
    """Thread owning an OnlineIdentifier (see the module docstring)."""

    def __init__(self, template, config, on_result=None, on_model=None, log=None,
                 lowpass=None):
        self.ident = OnlineIdentifier(template, config, lowpass=lowpass)
        self.period = config.period
        self.on_result = on_result
        self.on_model = on_model
        self.log = log or (lambda text: None)
        self.queue = collections.deque(maxlen=QUEUE_ITEMS)
        self.dropped = 0
        self.updates = 0
        self.last_seconds = float('nan')
        self.errors = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._commands = collections.deque()
        self._lock = threading.Lock()
        self._next_update = None
        self._newest = None
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
        self._wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        session = self._session
        if session is not None and session.is_alive():
            # a session fit still in compiled code when the interpreter exits aborts it
            session.join(timeout)

    def _put(self, item):
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(item)

    def put_encoders(self, t, q, qd, tau):
        self._put(('enc', t, q, qd, tau))
        self._wake.set()

    def put_excitations(self, t, u, envelope_noise=None):
        """Excitations at times t; ``envelope_noise``: raw EMG's S0 per muscle, if measured."""
        self._put(('emg', t, u, envelope_noise))

    def take(self, message):
        """
        Take a message of ``identifier_messages``: data, or a command (from any thread).

        ``Reset`` (back to the template, data cleared) and ``Iterations`` are done on the
        worker thread, in order; ``Enable`` and ``Period`` at once.
        """
        if isinstance(message, Encoders):
            for sample in message.samples():
                self.put_encoders(*sample)
        elif isinstance(message, Excitations):
            self.put_excitations(message.times, message.values, message.noise)
        elif isinstance(message, Enable):
            self.ident.enabled = bool(message.enabled)
        elif isinstance(message, Period):
            self.period = float(message.seconds)
        elif isinstance(message, (Reset, Iterations)):
            self._commands.append(message)
            self._wake.set()
        else:
            raise TypeError(f'the identifier does not take {message!r}')

    def current_file(self):
        """Return the last accepted model as a SubjectFile (thread-safe)."""
        with self._lock:
            return self.ident.current_file()

    # ------------------------------------------------------------------ worker thread
    def _run(self):
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                self._step()
            except Exception as err:  # noqa: B902 - the worker must survive a bad update
                self.errors += 1
                self.log(f'identifier error: {err!r}\n{traceback.format_exc(limit=3)}')
                with self._lock:
                    self.ident.z = self.ident.good_z.copy()

    def _step(self):
        while self._commands:
            cmd = self._commands.popleft()
            with self._lock:
                if isinstance(cmd, Reset):
                    self._generation += 1
                    self.queue.clear()
                    self.ident.reset()
                    self._next_update = None
                    self._newest = None
                else:
                    self.ident.config = dataclasses.replace(self.ident.config,
                                                            iterations=cmd.count)
        resets = self.ident.resets
        taken = 0
        while self.queue:
            item = self.queue.popleft()
            taken += 1
            if taken % ARCHIVE_EVERY == 0:
                # a backlog (after a long update) may be longer than the buffers hold
                self.ident.archive_new()
            if item[0] == 'enc':
                self.ident.add_encoders(*item[1:])
                self._newest = item[1]
            else:
                self.ident.add_excitations(item[1], item[2])
                if item[3] is not None:
                    self.ident.envelope_noise = item[3]
        if self.ident.resets != resets:
            self._next_update = None
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
        self._wake.set()

    def _report(self, result):
        self.updates += 1
        self.last_seconds = result.seconds
        if self.on_result is not None:
            self.on_result(result)
        if result.accepted and self.on_model is not None:
            self.on_model(self.current_file())
