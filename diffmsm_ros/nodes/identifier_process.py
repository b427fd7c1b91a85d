"""
The online identifier in a child process, so that it never holds the torque path's GIL.

The node hands over encoder samples and excitations (``put_*``: appended to a batch, sent
every ``FLUSH_PERIOD`` s of wall time, never blocking) and commands (``command``), in the
messages of ``identifier_messages``; the child runs an IdentifierWorker whose thread reads
that one bounded queue itself, and sends back every update result, the accepted models
(numpy pytree and YAML text) and counters.  If the child falls behind so far that the
queue is full (``MAX_BATCHES``, about 40 s of data), a batch that does not fit is dropped
and counted.

The child starts (and compiles) when identification is first enabled: at start-up, where
the node waits for it, or later (``command(Enable(True))``), when it compiles in the
background while the torque path runs and receives data from then on (``stats['state']``
says which).  A node that never identifies never pays for it.
"""

import functools
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback

from diffmsm_ros.identify.online import UpdateResult
from diffmsm_ros.nodes.identifier_messages import (
    Enable, Encoders, Excitations, Failed, Log, Model, Ready, Reset, Result, Stats, Stop,
    Stopped)
import numpy as np

FLUSH_PERIOD = 0.02     # s between batches sent to the child
MAX_BATCHES = 2000      # batches waiting for the child (about 40 s of data)
CHILD_NICENESS = 10      # scheduling priority of the identifier below the torque path
READY_TIMEOUT = 900.0   # s for the child to compile
STATS_PERIOD = 0.5      # s between the child's counters sent to the node


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """Return glibc's malloc_trim, or None where there is no glibc."""
    try:
        import ctypes
        return ctypes.CDLL('libc.so.6').malloc_trim
    except (OSError, AttributeError):
        return None


def _release_free_memory():
    """Hand freed heap memory back to the system (glibc), so RSS follows what is in use."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _join(process, timeout):
    """Wait up to ``timeout`` s for ``process`` to end; True if it did."""
    deadline = time.monotonic() + timeout
    while process.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            process.join(left)
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches ros2 launch and the node together, and launch
            # then sends the node another SIGINT: stopping goes on (no traceback, exit 0)
            pass
    return True


def _child(template_spec, config, inbox, outbox, lowpass=None):
    """Child process: run an IdentifierWorker fed from ``inbox``."""
    # Ctrl-C reaches the whole process group: the parent stops the child (``Stop``), so the
    # child must not die of it mid-update with a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # background work: lower priority on the last CPU and one XLA thread, so the torque
    # path keeps a core of its own
    from diffmsm_ros.nodes.realtime import background
    background(CHILD_NICENESS)
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               ' --xla_cpu_multi_thread_eigen=false').strip()
    try:
        from diffmsm_ros import templates
        from diffmsm_ros.files import modelfile
        from diffmsm_ros.jax_setup import configure
        from diffmsm_ros.nodes.identifier_worker import IdentifierWorker
        configure()
        template = templates.resolve(template_spec)

        def on_result(result):
            outbox.put(Result(result.__dict__, worker_stats()))
            _release_free_memory()

        def on_model(subject_file):
            # one form of the model: the torque path gets the published file's
            outbox.put(Model(subject_file.model, modelfile.dumps(subject_file),
                             worker_stats()))

        def log(text):
            outbox.put(Log(text))

        # the worker reads the node's queue itself: one bounded queue from node to identifier
        worker = IdentifierWorker(template, config, on_result, on_model, log, lowpass,
                                  inbox=inbox)

        def worker_stats():
            ident = worker.ident
            return {'enabled': ident.enabled, 'busy': worker.busy, 'updates': worker.updates,
                    'accepted': ident.accepted, 'rejected': ident.rejected,
                    'buffer_resets': ident.resets, 'queue_dropped': worker.dropped,
                    'errors': worker.errors, 'median_sigma_pct': 100 * ident.median_sigma(),
                    'information_nats': ident.information_gained(),
                    'carried_s': ident.absorbed * ident.fit_span * ident.h,
                    'belief_rollbacks': ident.belief_rollbacks,
                    'beliefs_let_go': ident.beliefs_let_go,
                    'session_fits': ident.session_fits,
                    'tracked_chunks': ident.tracked,
                    'tracking_refused': ident.tracking_refused,
                    'session_archive_s': ident.archive.seconds,
                    'session_archive_lost_s': ident.archive_lost}

        worker.compile()
        _release_free_memory()
        worker.start()
        outbox.put(Ready(worker_stats()))
        # until ``Stop`` (which the worker carries out in its turn) or the parent is gone
        while worker.thread.is_alive():
            worker.thread.join(STATS_PERIOD)
            outbox.put(Stats(worker_stats()))
        worker.stop()               # a session fit still running finishes first
        outbox.put(Stopped())
    except Exception:  # noqa: B902 - report anything to the parent, then end
        outbox.put(Failed(traceback.format_exc()))


class IdentifierProcess:
    """Parent side (see the module docstring); callbacks run on a receiver thread."""

    def __init__(self, template_spec, config, on_result=None, on_model=None, log=None,
                 lowpass=None):
        """``lowpass``: the raw EMG envelope's low-pass (Hz), for session fits (raw EMG)."""
        ctx = multiprocessing.get_context('spawn')
        self.inbox = ctx.Queue(MAX_BATCHES)
        self.outbox = ctx.Queue()
        self.process = ctx.Process(target=_child, args=(template_spec, config, self.inbox,
                                                        self.outbox, lowpass),
                                   name='diffmsm-identifier', daemon=True)
        self.on_result = on_result
        self.on_model = on_model
        self.log = log or (lambda text: None)
        self.stats = {'enabled': True, 'busy': False, 'updates': 0, 'accepted': 0, 'rejected': 0,
                      'buffer_resets': 0, 'queue_dropped': 0, 'errors': 0,
                      'median_sigma_pct': float('nan'), 'information_nats': 0.0,
                      'carried_s': 0.0, 'belief_rollbacks': 0, 'beliefs_let_go': 0,
                      'session_fits': 0, 'tracked_chunks': 0, 'tracking_refused': 0,
                      'session_archive_s': 0.0, 'session_archive_lost_s': 0.0}
        self.dropped = 0
        self.model_yaml = None
        self._batch = []
        self._encoders = []
        self._excitations = []
        self._noise = None
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self.stats['state'] = 'not started'
        self.started = False
        self._ready = threading.Event()      # the child compiled, or failed
        self._failure = None
        self._stopped = threading.Event()
        # the threads that hold the GIL now and then exist from here on (the node raises
        # the priority of every thread it has once it is set up): the queue's feeder
        # thread starts with this first message, the child reads it when it starts
        self._send([Enable(True)])
        self._receiver = threading.Thread(target=self._receive, name='diffmsm-id-receiver',
                                          daemon=True)
        self._receiver.start()

    def start(self, wait=True):
        """
        Start the child; with ``wait`` return once it compiled (RuntimeError if it failed).

        Without ``wait`` it compiles in the background (``stats['state']``).
        """
        # few malloc arenas in the child (read at its start): its memory stays compact
        os.environ.setdefault('MALLOC_ARENA_MAX', '2')
        self.stats['state'] = 'compiling'
        self.process.start()
        self.started = True
        if not wait:
            return
        try:
            self._wait_ready()
        except BaseException:
            # Ctrl-C (or a failure) while compiling: the child ignores SIGINT, so end it here
            self.process.terminate()
            _join(self.process, 10.0)
            self._stopped.set()
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(1.0):
            if not self.process.is_alive():
                raise RuntimeError('the identifier process ended during start-up')
            if time.monotonic() > deadline:
                raise RuntimeError('the identifier process did not become ready')
        if self._failure is not None:
            raise RuntimeError(f'the identifier process failed:\n{self._failure}')

    def stop(self, timeout=10.0):
        """Let the child finish an update in flight and end; terminate it after ``timeout`` s."""
        if self.started:
            self._send([Stop()])
            if not _join(self.process, timeout):
                self.process.terminate()
                _join(self.process, timeout)
        self._stopped.set()

    # ------------------------------------------------------------------ to the child
    def _send(self, items):
        try:
            self.inbox.put_nowait(items)
        except queue.Full:
            self.dropped += 1

    def _add(self, item=None):
        if not self.started:        # no child to read it: nothing is kept
            with self._lock:
                self._batch, self._encoders, self._excitations = [], [], []
            return
        with self._lock:
            if item is not None:
                self._batch.append(item)
            now = time.monotonic()
            if now - self._last_flush < FLUSH_PERIOD:
                return
            # samples go as one array per stream and batch: pickling is the sending
            # thread's work, and it holds the GIL the torque path needs
            if self._excitations:
                self._batch.insert(0, Excitations(np.concatenate(self._excitations),
                                                  self._noise))
                self._excitations, self._noise = [], None
            if self._encoders:
                self._batch.insert(0, Encoders(np.stack(self._encoders)))
                self._encoders = []
            batch, self._batch, self._last_flush = self._batch, [], now
        self._send(batch)

    def put_encoders(self, t, q, qd, tau):
        """One encoder sample (t s, q rad, qd rad/s or None, tau N m)."""
        row = Encoders.row(t, q, qd, tau)
        with self._lock:
            self._encoders.append(row)
        self._add()

    def put_excitations(self, t, u, envelope_noise=None):
        """Excitations u [S, nm] at times t [S] (s); raw EMG's noise density, if measured."""
        rows = Excitations.rows_of(t, u)
        with self._lock:
            self._excitations.append(rows)
            if envelope_noise is not None:
                self._noise = envelope_noise
        self._add()

    def command(self, message):
        """
        Send ``Reset``, ``Enable``, ``Period`` or ``Iterations`` (``identifier_messages``).

        The first ``Enable(True)`` starts the child (compiling in the background); before
        that, pausing only records it.  ``stats['enabled']`` changes when the child
        confirms it (after any data queued before).
        """
        if isinstance(message, Enable) and not self.started:
            self.stats['enabled'] = bool(message.enabled)
            if message.enabled:
                self.start(wait=False)
            return
        if isinstance(message, Reset):
            with self._lock:
                self._batch, self._encoders, self._excitations = [], [], []
        self._send([message])

    # ------------------------------------------------------------------ from the child
    def _receive(self):
        while not self._stopped.is_set():
            try:
                msg = self.outbox.get(timeout=0.5)
            except (queue.Empty, EOFError, OSError):
                if self.started and not self.process.is_alive() and \
                        not self._stopped.is_set():
                    self.stats['errors'] += 1
                    self.log('the identifier process ended unexpectedly')
                    return
                continue
            if isinstance(msg, Stopped):
                return
            try:
                self._handle(msg)
            except Exception:  # noqa: B902 - a failing callback must not end the link
                self.stats['errors'] += 1
                self.log(f'identifier result not handled:\n{traceback.format_exc(limit=4)}')

    def _handle(self, msg):
        if isinstance(msg, (Result, Model, Stats, Ready)):
            self.stats.update(msg.stats)
        if isinstance(msg, Ready):
            self.stats['state'] = 'ready'
            self._ready.set()
        elif isinstance(msg, Failed):
            self.stats['state'] = 'failed'
            self.stats['errors'] += 1
            self._failure = msg.text
            self._ready.set()
            self.log(msg.text)
        elif isinstance(msg, Result) and self.on_result is not None:
            self.on_result(UpdateResult(**msg.fields))
        elif isinstance(msg, Model):
            self.model_yaml = msg.text
            if self.on_model is not None:
                self.on_model(msg.model, msg.text)
        elif isinstance(msg, Log):
            self.log(msg.text)
