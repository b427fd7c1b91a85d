"""
The sensor subscriptions served on a thread of their own, without an executor.

rclpy's executors rebuild a wait set and schedule a task for every message: on this
2-core machine an echo node cost 380-420 us of CPU per message that way, against 180 us
with this loop (``bench/latency.py`` conditions, the machine shared with a test run).  The
loop waits on the sensor subscriptions alone, takes every message that is ready, and hands
them to their handlers in the order they were published (their middleware publish time),
so EMG and encoder samples reach the input time line in the order they were sent.

It uses rclpy's own wait-set and take calls (as the executors do); where they are missing
the node falls back to ordinary executor callbacks.
"""

import contextlib
import threading

WAIT = 100_000_000          # ns: the longest wait before the stop flag is read again


def available():
    """Whether this rclpy offers the wait-set and take calls the loop uses."""
    try:
        from rclpy.impl.implementation_singleton import rclpy_implementation as impl
    except ImportError:
        return False
    return hasattr(impl, 'WaitSet')


def no_event_callbacks():
    """Subscription event callbacks that create no event handlers (rclpy Humble and later)."""
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:                  # Humble
        from rclpy.qos_event import SubscriptionEventCallbacks
    return SubscriptionEventCallbacks(use_default_callbacks=False)


def serve(node, entries, qos, on_take, on_error=None):
    """
    Create the sensor subscriptions ``[(msg type, topic)]`` on ``node``.

    ``on_take([(entry index, msg, info)])`` gets the messages taken together, in publish
    order.  Where the loop is available it serves them (returned, not started, with the
    set of subscriptions the executor must not wait on); else the executor calls
    ``on_take`` with each message alone (None, empty set).  Served by the loop, the
    subscriptions carry no QoS event handlers: the executor would wait on those and spin
    (100 % CPU measured).
    """
    looped = available()
    events = no_event_callbacks() if looped else None
    subs = [(node.create_subscription(
        kind, topic, with_info(lambda msg, info, i=i: on_take([(i, msg, info)])), qos,
        event_callbacks=events), i) for i, (kind, topic) in enumerate(entries)]
    if not looped:
        return None, set()
    return (SensorLoop(node.context, subs, on_error=on_error, on_take=on_take),
            {sub for sub, _ in subs})


def with_info(callback):
    """Return the callback where rclpy passes MessageInfo, else one that passes None."""
    from rclpy.subscription import Subscription
    if hasattr(Subscription, 'CallbackType'):
        return callback
    return lambda msg: callback(msg, None)


class SensorLoop:
    """
    Serves ``[(subscription, handler(msg, info))]`` on a thread (see the module text).

    With ``on_take``, the messages taken together go to it at once as ``[(handler, msg,
    info)]`` in publish order (the handlers are then only labels).
    """

    def __init__(self, context, entries, on_start=None, on_error=None, on_take=None):
        from rclpy.guard_condition import GuardCondition
        self.context = context
        self.entries = list(entries)
        self.on_start = on_start
        self.on_error = on_error
        self.on_take = on_take
        self.wake = GuardCondition(None, None, context=context)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name='diffmsm-sensors', daemon=True)
        self.taken = 0

    def start(self):
        self.thread.start()

    def stop(self, timeout=5.0):
        self.stopping.set()
        try:
            self.wake.trigger()
        except Exception:  # noqa: B902 - the context may already be gone
            pass
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _run(self):
        from rclpy.impl.implementation_singleton import rclpy_implementation as impl
        if self.on_start is not None:
            self.on_start()
        subs = [sub for sub, _ in self.entries]
        try:
            with self.context.handle:
                wait_set = impl.WaitSet(len(subs), 1, 0, 0, 0, 0, self.context.handle)
            while not self.stopping.is_set() and self.context.ok():
                # holding the handles keeps them alive while the wait set refers to them
                with contextlib.ExitStack() as held:
                    held.enter_context(self.context.handle)
                    wait_set.clear_entities()
                    for handle in [sub.handle for sub in subs] + [self.wake.handle]:
                        held.enter_context(handle)
                    for sub in subs:
                        wait_set.add_subscription(sub.handle)
                    wait_set.add_guard_condition(self.wake.handle)
                    wait_set.wait(WAIT)
                self._dispatch(self._take())
        except Exception as err:  # noqa: B902 - a dying context ends the loop, nothing else
            if not self.stopping.is_set() and self.context.ok() and self.on_error:
                self.on_error(err)

    def _take(self):
        """Every ready message: (publish time, entry index, handler, message, info)."""
        taken = []
        for order, (sub, handler) in enumerate(self.entries):
            with sub.handle:
                while True:
                    got = sub.handle.take_message(sub.msg_type, sub.raw)
                    if got is None:
                        break
                    msg, info = got
                    taken.append((info.get('source_timestamp', 0), order, handler, msg, info))
        if len(taken) > 1:
            taken.sort(key=lambda item: (item[0], item[1]))
        return taken

    def _dispatch(self, taken):
        self.taken += len(taken)
        if self.on_take is not None:
            if taken:
                self.on_take([(handler, msg, info) for _, _, handler, msg, info in taken])
            return
        for _, _, handler, msg, info in taken:
            handler(msg, info)
