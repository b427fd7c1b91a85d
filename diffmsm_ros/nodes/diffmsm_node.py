"""
The ``diffmsm`` node: EMG and encoders in, predicted joint torques and subject models out.

Callbacks only convert messages and copy them into bounded buffers; for every encoder sample
the torque path advances the muscle activations over the EMG received since the previous
sample and publishes the net muscle torque of the last accepted model.  The online
identifier runs on its own thread and swaps the model when an update is accepted.  Every
JIT compilation happens in the constructor, before the node logs that it is ready.
"""

import collections
import math
import os
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from diffmsm_ros import settings
from diffmsm_ros.emg.intake import EmgError, EmgIntake
from diffmsm_ros.files import modelfile
from diffmsm_ros.nodes import convert
from diffmsm_ros.nodes.identifier_process import IdentifierProcess
from diffmsm_ros.nodes.torque_path import TorquePath
import numpy as np
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

BACKWARD_TOLERANCE = 0.05   # s: an encoder stamp older than this is a restart, not jitter
FUTURE_TOLERANCE = 1.0      # s: stamps further ahead of the node's clock are refused
ENCODER_WALLS = 200         # recent (publish wall time, stamp) pairs of encoder messages
PENDING_EMG = 1000          # EMG messages waiting for the next encoder sample
LATENCIES = 2000            # torque-path compute times kept for the percentiles
SENSOR_DEPTH = 1000         # messages kept per sensor subscription (1 s at 1 kHz)
GIL_SWITCH = 2e-4            # s, Python thread switch interval in the node process
LOG_THROTTLE = 5.0          # s between log lines of one kind of bad input
BAD_RECENT = 10.0           # s a bad input keeps the inputs status at WARN
RATE_TOLERANCE = 0.2        # relative input-rate error that makes the inputs status WARN
RATE_SPAN = 2.0             # s of stamps over which input rates are measured
RATE_ENTRIES = 5000         # messages kept per input for the rate (bounds memory)
NOISE_PERIOD = 1.0          # s of EMG between raw-EMG noise readings sent to the identifier


def _descriptor(name, spec):
    desc = ParameterDescriptor(name=name, description=spec.description,
                               read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.low is not None and isinstance(spec.default, (int, float)) and \
            not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(spec.low),
                                               to_value=int(spec.high), step=1)]
        else:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    return desc


class DiffMsmNode(Node):
    """
    The node of the contract (topics, services, parameters, diagnostics).

    Callbacks, services and timers all run on one executor thread, so the node's buffers
    need no lock; only the identifier's receiver thread swaps the model, through the torque
    path's own lock.
    """

    def __init__(self, **kwargs):
        super().__init__(settings.NODE_NAME, **kwargs)
        for name, spec in settings.SPECS.items():
            self.declare_parameter(name, spec.default, _descriptor(name, spec))
        values = {}
        for name in settings.SPECS:
            values[name] = settings.check(name, self.get_parameter(name).value)
        self.values = values
        self._setup(values)
        self.add_on_set_parameters_callback(self._on_parameters)
        self.ready = True
        self.get_logger().info(
            f'ready: model {self.template.model.name!r}, joints {self.joints}, '
            f'{self.template.model.n_muscles} muscles, EMG {values["emg.kind"]} at '
            f'{self.intake.rate:g} Hz; compiled in {self.compile_seconds:.1f} s')

    # ------------------------------------------------------------------ set-up
    def _setup(self, values):
        from diffmsm_ros import templates
        from diffmsm_ros.jax_setup import configure
        configure()
        import jax
        if 'jax_cpu_enable_async_dispatch' in jax.config.values:
            # run the small torque-path computations on the calling thread
            jax.config.update('jax_cpu_enable_async_dispatch', False)
        self.ready = False
        try:
            self.template = templates.resolve(values['model.template'])
        except (OSError, ValueError) as err:
            raise settings.SettingsError(f'model.template: {err}') from None
        model = self.template.model
        names = [n for n in values['joints'] if n]
        if names and sorted(names) != sorted(model.joint_names):
            raise settings.SettingsError(f'joints {names} must name the model joints '
                                         f'{list(model.joint_names)}')
        self.joints = list(model.joint_names)
        self.intake = EmgIntake(values, model.muscle_names)
        self.channel_names = settings.channel_list(values, model.muscle_names)
        config = settings.identify_config(values)
        started = time.monotonic()
        self.torque = TorquePath(model, self.intake.rate)
        q0 = np.mean(np.asarray(model.skeleton.joint_range), axis=1)
        self.torque.compile(q0, np.zeros_like(q0))
        self.model_yaml = modelfile.dumps(self.template)
        self.worker = IdentifierProcess(values['model.template'], config, self._on_result,
                                        self._on_model, self._log_error)
        self.worker.set_enabled(values['identification.enabled'])
        try:
            self.worker.start()      # returns once the identifier process has compiled
        except RuntimeError as err:
            raise settings.SettingsError(str(err)) from None
        self.compile_seconds = time.monotonic() - started

        self.emg_pending = collections.deque(maxlen=PENDING_EMG)
        self.emg_unstamped = collections.deque(maxlen=PENDING_EMG)
        self.encoder_walls = collections.deque(maxlen=ENCODER_WALLS)
        self.latency = collections.deque(maxlen=LATENCIES)
        self.t_ref = None
        self.last_encoder = None      # (stamp ns, q) of the previous encoder sample
        self.last_emg_time = None     # s, newest EMG sample handed to the torque path
        self.noise_sent_at = None     # s, EMG time of the last noise reading sent
        self.counts = collections.Counter()
        self.bad = {}                 # input kind -> (last reason, steady s)
        self.bad_codes = collections.Counter()   # 'bad_<kind>.<code>' -> messages
        self.last_log = {}
        self.last_result = None
        self.encoder_receipt = None   # steady s of the last encoder / EMG message
        self.emg_receipt = None
        self.rate_window = {'encoders': collections.deque(maxlen=RATE_ENTRIES),
                            'emg': collections.deque(maxlen=RATE_ENTRIES)}
        self.stale = False

        # sensor-data QoS (best effort, keep last), deep enough for 1 kHz bursts
        sensor = QoSProfile(depth=SENSOR_DEPTH, history=HistoryPolicy.KEEP_LAST,
                            reliability=ReliabilityPolicy.BEST_EFFORT,
                            durability=qos_profile_sensor_data.durability)
        # encoders first: when both are ready, rclpy takes them in creation order, so an
        # EMG chunk is stamped after the encoder samples recorded before it
        self.create_subscription(JointState, 'joint_states',
                                 _with_info(self._on_joint_states), sensor)
        if values['emg.msg_type'] == 'joint_state':
            self.create_subscription(JointState, 'emg', self._on_emg_joint_state, sensor)
        else:
            self.create_subscription(Float64MultiArray, 'emg', _with_info(self._on_emg_array),
                                     sensor)
        self.pub_torque = self.create_publisher(JointState, '~/joint_torque', 10)
        self.pub_muscles = self.create_publisher(JointState, '~/muscle_states', 10)
        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_model = self.create_publisher(String, '~/subject_model', latched)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_service(Trigger, '~/save_model', self._on_save)
        self.create_service(Trigger, '~/reset', self._on_reset)
        self.create_service(SetBool, '~/enable_identification', self._on_enable)
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.diag_timer = self.create_timer(values['diagnostics_period'], self._publish_diag,
                                            clock=self.steady)
        self._publish_model(self.model_yaml)

    def destroy_node(self):
        worker = getattr(self, 'worker', None)
        if worker is not None:
            worker.stop()
        return super().destroy_node()

    # ------------------------------------------------------------------ helpers
    def _now_ns(self):
        return self.get_clock().now().nanoseconds

    def _seconds(self, ns):
        """Session seconds of a time in ns (relative to a whole-second reference)."""
        if self.t_ref is None:
            self.t_ref = (int(ns) // 1_000_000_000) * 1_000_000_000
        return (int(ns) - self.t_ref) * 1e-9

    def _bad_input(self, kind, reason, code):
        """Count, report and log (throttled) an unusable ``kind`` message ('emg', ...)."""
        self.counts[f'bad_{kind}'] += 1
        self.bad_codes[f'bad_{kind}.{code}'] += 1
        self.bad[kind] = (reason, time.monotonic())
        now = time.monotonic()
        if now - self.last_log.get(kind, -1e9) >= LOG_THROTTLE:
            self.last_log[kind] = now
            self.get_logger().warning(f'{kind}: {reason} (message ignored)')

    def _log_error(self, text):
        self._log('error', text)

    def _log(self, level, text):
        """Log through ROS, or to stderr once the context is shut down (Ctrl-C, stopping)."""
        if self.context.ok():
            getattr(self.get_logger(), level)(text)
        else:
            print(f'[{level.upper()}] [diffmsm]: {text}', file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ callbacks
    def _on_emg_array(self, msg, info):
        try:
            samples = convert.emg_chunk(msg, self.intake.channels)
        except convert.InputError as err:
            self._bad_input('emg', str(err), err.code)
            return
        published = _publish_wall(info)
        now = self._now_ns()
        if published is None and now <= 0:
            # use_sim_time and no /clock yet: the receipt time means nothing
            self._bad_input('emg', 'no clock yet (use_sim_time without /clock)', 'no_clock')
            return
        self.emg_unstamped.append((published, now, samples))
        self.emg_receipt = time.monotonic()

    def _on_emg_joint_state(self, msg):
        try:
            stamp, samples = convert.emg_joint_state(msg, self.channel_names)
        except convert.InputError as err:
            self._bad_input('emg', str(err), err.code)
            return
        times = self.intake.times(self._seconds(stamp), 1, stamped=True)
        self.emg_pending.append((times, samples))
        self._count_rate('emg', times[-1], 1)

    def _count_rate(self, kind, t, samples):
        self.rate_window[kind].append((t, samples))
        if kind == 'emg':
            self.emg_receipt = time.monotonic()
        else:
            self.encoder_receipt = time.monotonic()

    def _on_joint_states(self, msg, info):
        started = time.perf_counter()
        try:
            stamp, q, qd, tau = convert.joint_sample(msg, self.joints)
        except convert.InputError as err:
            self._bad_input('joint_states', str(err), err.code)
            return
        now = self._now_ns()
        if now > 0 and stamp > now + FUTURE_TOLERANCE * 1e9:
            self._bad_input('joint_states', 'stamp is in the future of the node clock',
                            'future_stamp')
            return
        if self.last_encoder is not None and stamp <= self.last_encoder[0]:
            if stamp < self.last_encoder[0] - BACKWARD_TOLERANCE * 1e9:
                self._restart_streams()
            else:
                self._bad_input('joint_states', 'stamp not after the previous sample',
                                'repeated_stamp')
                return
        t = self._seconds(stamp)
        self.counts['encoders'] += 1
        self._count_rate('encoders', t, 1)
        published = _publish_wall(info)
        if published is not None:
            self.encoder_walls.append((published, stamp))
        self._stamp_emg(published)
        self._drain_emg()
        measured_qd = qd
        if qd is None:
            qd = np.zeros_like(q)
            if self.last_encoder is not None:
                dt = (stamp - self.last_encoder[0]) * 1e-9
                qd = (q - self.last_encoder[1]) / dt
        self.last_encoder = (stamp, q)
        self.worker.put_encoders(t, q, measured_qd, tau)
        stale = (self.last_emg_time is None
                 or t - self.last_emg_time > self.values['stale_timeout'])
        self.stale = stale
        if stale:
            self.counts['torque_withheld_stale'] += 1
            return
        torque, act, fibre, force = self.torque.outputs(q, qd)
        if not (np.all(np.isfinite(torque)) and np.all(np.isfinite(force))):
            self.counts['torque_withheld_nonfinite'] += 1
            return
        self.pub_torque.publish(convert.joint_message(stamp, self.joints, q, qd, torque))
        self.pub_muscles.publish(convert.joint_message(
            stamp, self.template.model.muscle_names, act, fibre, force))
        self.counts['torque_published'] += 1
        self.latency.append(time.perf_counter() - started)

    def _stamp_emg(self, newest_wall):
        """
        Give unstamped EMG chunks their time on the encoders' time line.

        A chunk's publish time (wall clock, from the middleware) is placed between the
        publish times of the encoder messages around it and given the stamp interpolated
        between theirs, so processing order and lag do not move it.  Without publish times
        (older rclpy) the node clock at processing is used.
        """
        while self.emg_unstamped:
            published, now, samples = self.emg_unstamped[0]
            if published is None or not self.encoder_walls:
                receipt = now
            elif newest_wall is not None and published > newest_wall:
                break          # published after the newest encoder: wait for the next
            else:
                receipt = _interpolate_stamp(self.encoder_walls, published)
            self.emg_unstamped.popleft()
            times = self.intake.times(self._seconds(receipt), len(samples))
            self.emg_pending.append((times, samples))
            # the rate is measured on the encoders' time line, not on the EMG sample clock
            self.rate_window['emg'].append((self._seconds(receipt), len(samples)))

    def _drain_emg(self):
        pending = list(self.emg_pending)
        self.emg_pending.clear()
        for times, samples in pending:
            try:
                u = self.intake.excitations(samples)
            except EmgError as err:
                self._bad_input('emg', str(err), err.code)
                continue
            if self.last_emg_time is not None and times[0] < self.last_emg_time - \
                    BACKWARD_TOLERANCE:
                self.torque.reset()
            self.torque.add_excitations(u)
            self.worker.put_excitations(times - self.intake.lag, u, self._noise_reading(times))
            self.last_emg_time = float(times[-1])

    def _noise_reading(self, times):
        """Raw EMG's noise density for the identifier, once per ``NOISE_PERIOD``; else None."""
        if self.intake.filter is None:
            return None
        if self.noise_sent_at is not None and 0 <= times[-1] - self.noise_sent_at < NOISE_PERIOD:
            return None
        density = self.intake.noise_density
        if density is not None:
            self.noise_sent_at = float(times[-1])
        return density

    def _restart_streams(self):
        """Time went backwards (a bag restarted): start the streams afresh."""
        self.counts['time_jumps'] += 1
        self.get_logger().warning('encoder time jumped backwards: buffers cleared')
        self.intake.reset()
        self.encoder_walls.clear()
        self.torque.reset()
        self.last_encoder = None
        self.last_emg_time = None
        for window in self.rate_window.values():
            window.clear()

    # ------------------------------------------------------------------ identifier
    def _on_result(self, result):
        self.last_result = result
        kind = 'accepted' if result.accepted else 'rejected'
        self._log(
            'info',
            f'update {kind} ({result.reason}) at {result.data_time:.1f} s: fit '
            f'{result.fit_cost:.3g}, hold-out {result.holdout_before:.3g} -> '
            f'{result.holdout_after:.3g}, {result.seconds * 1e3:.0f} ms')

    def _on_model(self, model, text):
        """Swap in an accepted model (called on the identifier receiver thread)."""
        self.torque.set_model(model)
        self.model_yaml = text
        if self.context.ok():       # a model accepted while stopping is still saved
            self._publish_model(text)
        if self.values['model.save_on_update']:
            self._save(text)

    def _publish_model(self, text):
        self.pub_model.publish(String(data=text))

    def _save(self, text):
        path = os.path.abspath(self.values['model.output_path'])
        try:
            modelfile.write_text_atomic(path, text)
            return True, path
        except OSError as err:
            self._log('error', f'cannot save the model to {path}: {err}')
            return False, f'cannot save to {path}: {err}'

    # ------------------------------------------------------------------ services
    def _on_save(self, request, response):
        response.success, response.message = self._save(self.model_yaml)
        return response

    def _on_reset(self, request, response):
        self.worker.reset()
        self.torque.set_model(self.template.model)
        self.emg_pending.clear()
        self.emg_unstamped.clear()
        self.encoder_walls.clear()
        self.intake.reset()
        self.torque.reset()
        self.last_encoder = None
        self.last_emg_time = None
        self.model_yaml = modelfile.dumps(self.template)
        self._publish_model(self.model_yaml)
        response.success, response.message = True, 'back to the template, buffers cleared'
        return response

    def _on_enable(self, request, response):
        self.worker.set_enabled(request.data)
        self.values['identification.enabled'] = bool(request.data)
        response.success = True
        response.message = 'identification ' + ('enabled' if request.data else 'paused')
        return response

    # ------------------------------------------------------------------ parameters
    def _on_parameters(self, params):
        updates = {}
        for p in params:
            if p.name == 'use_sim_time':
                continue
            spec = settings.SPECS.get(p.name)
            if spec is None:
                return SetParametersResult(successful=False,
                                           reason=f'unknown parameter {p.name}')
            if spec.read_only:
                return SetParametersResult(successful=False,
                                           reason=f'{p.name} is read-only')
            try:
                updates[p.name] = settings.check(p.name, p.value)
            except settings.SettingsError as err:
                return SetParametersResult(successful=False, reason=str(err))
        self.values.update(updates)
        if 'identification.enabled' in updates:
            self.worker.set_enabled(updates['identification.enabled'])
        if 'identification.period' in updates:
            self.worker.set_period(updates['identification.period'])
        if 'identification.iterations' in updates:
            self.worker.set_iterations(updates['identification.iterations'])
        if 'diagnostics_period' in updates:
            self.diag_timer.cancel()
            self.destroy_timer(self.diag_timer)
            self.diag_timer = self.create_timer(updates['diagnostics_period'],
                                                self._publish_diag, clock=self.steady)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ diagnostics
    def _rate(self, kind):
        """Return the samples per second of ``kind`` over its last ``RATE_SPAN`` s of stamps."""
        entries = list(self.rate_window[kind])
        window = [(t, n) for t, n in entries if t >= entries[-1][0] - RATE_SPAN] \
            if entries else []
        if len(window) < 2:
            return float('nan')
        span = window[-1][0] - window[0][0]
        samples = sum(n for _, n in window[1:])
        return samples / span if span > 0 else float('nan')

    def diagnostic_statuses(self):
        """[(name, level, message, values)] describing inputs, torque and identifier."""
        now = time.monotonic()
        timeout = self.values['stale_timeout']
        statuses = []
        enc_age = now - self.encoder_receipt if self.encoder_receipt else float('inf')
        emg_age = now - self.emg_receipt if self.emg_receipt else float('inf')
        problems = []
        if self.encoder_receipt is None and self.emg_receipt is None:
            level, problems = 'WARN', ['waiting for EMG and encoders']
        elif self.stale or enc_age > timeout or emg_age > timeout:
            level, problems = 'ERROR', ['stale input: torque withheld']
        else:
            level = 'OK'
        recent = {k: reason for k, (reason, at) in self.bad.items() if now - at < BAD_RECENT}
        problems += [f'bad {k}: {reason}' for k, reason in recent.items()]
        measured_rates = {kind: self._rate(kind) for kind in ('encoders', 'emg')}
        rates = {'encoder_rate_hz': measured_rates['encoders'],
                 'emg_rate_hz': measured_rates['emg']}
        for kind, expected in (('encoders', self.values['rates.encoders']),
                               ('emg', self.values['rates.emg'] or self.intake.rate)):
            measured = measured_rates[kind]
            if expected > 0 and math.isfinite(measured) and \
                    abs(measured - expected) > RATE_TOLERANCE * expected:
                problems.append(f'{kind} at {measured:.0f} Hz, expected {expected:g}')
        if level == 'OK' and problems:
            level = 'WARN'
        text = '; '.join(problems) or 'receiving EMG and encoders'
        statuses.append(('diffmsm: inputs', level, text, dict(
            rates, encoder_age_s=enc_age, emg_age_s=emg_age,
            bad_joint_states=self.counts['bad_joint_states'], bad_emg=self.counts['bad_emg'],
            time_jumps=self.counts['time_jumps'], emg_clipped=self.intake.clipped,
            **self.bad_codes,
            emg_clock_anchors=self.intake.anchors, **_offset_stats(self.intake.offsets),
            **_envelope_error_stats(self.intake.filter))))
        lat = np.asarray(self.latency, dtype=float) * 1e3
        pct = (np.percentile(lat, [50, 99]).tolist() + [float(lat.max())]) if lat.size \
            else [float('nan')] * 3
        statuses.append(('diffmsm: torque', 'ERROR' if self.stale else 'OK',
                         'withheld (stale input)' if self.stale else 'publishing', {
                             'encoder_samples': self.counts['encoders'],
                             'published': self.counts['torque_published'],
                             'withheld_stale': self.counts['torque_withheld_stale'],
                             'withheld_nonfinite': self.counts['torque_withheld_nonfinite'],
                             'step_ms_p50': pct[0], 'step_ms_p99': pct[1],
                             'step_ms_max': pct[2]}))
        stats = dict(self.worker.stats)
        res = self.last_result
        level = 'WARN' if stats['errors'] else 'OK'
        text = 'paused' if not stats['enabled'] else (
            'waiting for data' if res is None else res.reason)
        statuses.append(('diffmsm: identifier', level, text, dict(
            stats, queue_dropped=stats['queue_dropped'] + self.worker.dropped,
            loss=res.fit_cost if res else float('nan'),
            holdout_loss=res.holdout_after if res else float('nan'),
            update_s=res.seconds if res else float('nan'))))
        return statuses

    def _publish_diag(self):
        msg = convert.diagnostics(self.get_clock().now().to_msg(), self.get_name(),
                                  self.diagnostic_statuses())
        self.pub_diag.publish(msg)


def _with_info(callback):
    """Return the callback where rclpy passes MessageInfo, else one that passes None."""
    from rclpy.subscription import Subscription
    if hasattr(Subscription, 'CallbackType'):
        return callback
    return lambda msg: callback(msg, None)


def _publish_wall(info):
    """Publish time (ns, wall clock) of a message from its MessageInfo, if known."""
    if not info:
        return None
    value = info.get('source_timestamp') if isinstance(info, dict) else None
    return int(value) if value else None


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
            return s0 + (s1 - s0) * (wall - w0) / (w1 - w0)
        newer = (w0, s0)
    return walls[0][1]


def _offset_stats(offsets):
    """Receipt time minus EMG sample clock (ms): min, median, max of recent chunks."""
    values = np.asarray(offsets, dtype=float) * 1e3
    if not values.size:
        return {}
    return {'emg_receipt_lag_ms_min': float(values.min()),
            'emg_receipt_lag_ms_p50': float(np.median(values)),
            'emg_receipt_lag_ms_max': float(values.max())}


def _envelope_error_stats(envelope_filter):
    """Raw EMG: the envelope's random error (% RMS) the filter measures, over channels."""
    if envelope_filter is None:
        return {}
    error = 100 * envelope_filter.envelope_error
    known = error[np.isfinite(error)]
    if not known.size:
        return {'emg_envelope_error_pct_median': float('nan'),
                'emg_envelope_error_pct_max': float('nan')}
    return {'emg_envelope_error_pct_median': float(np.median(known)),
            'emg_envelope_error_pct_max': float(known.max())}


def main(args=None):
    """Entry point of ``diffmsm_node`` (ros2 run / launch)."""
    # the executor and the identifier receiver thread share the GIL: hand it over often
    sys.setswitchinterval(GIL_SWITCH)
    rclpy.init(args=args)
    node = None
    try:
        node = DiffMsmNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except settings.SettingsError as err:
        print(f'diffmsm_node: {err}')
        return 2
    except KeyboardInterrupt:
        pass
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
