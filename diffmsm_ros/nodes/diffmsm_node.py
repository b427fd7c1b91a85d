"""
The ``diffmsm`` node: EMG and encoders in, predicted joint torques and subject models out.

Wiring only: parameters, subscriptions, publishers, services and diagnostics.  Each
sample goes to ``diffmsm_ros.live`` (input time line, torque path; no ROS); the identifier
runs in a child process (``IdentifierProcess``) and swaps in each accepted model.  All is
compiled before the node logs ready; an identifier disabled at start-up starts (and
compiles, in its own process) when it is first enabled.
"""

import threading
import time

from diffmsm_ros import settings
from diffmsm_ros.emg.intake import EmgIntake
from diffmsm_ros.files import modelfile
from diffmsm_ros.jax_setup import configure
from diffmsm_ros.live.step_times import StepTimes
from diffmsm_ros.live.timeline import InputTimeline, Torque
from diffmsm_ros.live.torque import TorquePath
from diffmsm_ros.nodes import convert, diagnostics, qos, realtime, sensor_loop
from diffmsm_ros.nodes.identifier_messages import Enable, Reset
from diffmsm_ros.nodes.identifier_process import IdentifierProcess
from diffmsm_ros.nodes.node_log import NodeLog
from diffmsm_ros.nodes.parameters import declare, on_set, resolve_template
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

ENCODERS, EMG = 0, 1        # the sensor subscriptions, created in this order


class DiffMsmNode(Node):
    """
    The node of the contract (topics, services, parameters, diagnostics).

    Sensors are served on the sensor loop's thread, services and timers on the executor's,
    and the identifier's receiver thread swaps the model (``TorquePath.set_model``).
    """

    def __init__(self, **kwargs):
        super().__init__(settings.NODE_NAME, **kwargs)
        self.log = NodeLog(self, settings.NODE_NAME)
        self.values = declare(self)
        self._setup(self.values)
        self.add_on_set_parameters_callback(lambda params: on_set(self, params))
        self.get_logger().info(
            f'ready: model {self.template.model.name!r}, joints {self.joints}, '
            f'{self.template.model.n_muscles} muscles, EMG {self.values["emg.kind"]} at '
            f'{self.intake.rate:g} Hz; compiled in {self.compile_seconds:.1f} s')

    def _setup(self, values):
        configure()
        self.template = resolve_template(values)
        model = self.template.model
        self.joints = list(model.joint_names)
        self.read_joints = convert.JointReader(self.joints)
        emg = settings.emg_config(values, model.muscle_names)
        self.intake = EmgIntake(emg, model.muscle_names)
        self.channel_names = emg.channel_names(model.muscle_names)
        started = time.monotonic()
        self.torque = TorquePath(model)
        self.torque.compile()
        self.model_yaml = modelfile.dumps(self.template)
        self.worker = IdentifierProcess(values['model.template'],
                                        settings.identify_config(values), self._on_result,
                                        self._on_model, self.log.error, lowpass=emg.lowpass)
        if values['identification.enabled']:
            try:
                self.worker.start()      # returns once the identifier process has compiled
            except RuntimeError as err:
                raise settings.SettingsError(str(err)) from None
        else:
            # started, and compiled in the background, when identification is enabled
            self.worker.command(Enable(False))
        self.compile_seconds = time.monotonic() - started
        self.lock = threading.Lock()      # the time line: sensor thread vs executor thread
        self.timeline = InputTimeline(settings.timeline_config(values), self.intake,
                                      self.torque, sink=self.worker, log=self.log.throttled)
        self.step_times = StepTimes()
        self.last_result = None
        self.stream_problem = ''       # input-rate errors that explain rejected updates
        self.emg_stamped = values['emg.msg_type'] == 'joint_state'
        emg_type = JointState if self.emg_stamped else Float64MultiArray
        self.sensor_loop, self._hidden = sensor_loop.serve(
            self, [(JointState, 'joint_states'), (emg_type, 'emg')], qos.SENSOR,
            self._on_take, lambda err: self.log.error(f'sensor loop stopped: {err!r}'))
        self.out_torque = convert.JointStateFiller(
            self.create_publisher(JointState, '~/joint_torque', 10), self.joints)
        self.out_muscles = convert.JointStateFiller(
            self.create_publisher(JointState, '~/muscle_states', 10), model.muscle_names)
        self.pub_model = self.create_publisher(String, '~/subject_model', qos.LATCHED)
        self.pub_diag = self.create_publisher(convert.DiagnosticArray, '/diagnostics', 10)
        self.create_service(Trigger, '~/save_model', self._on_save)
        self.create_service(Trigger, '~/reset', self._on_reset)
        self.create_service(SetBool, '~/enable_identification', self._on_enable)
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.diag_timer = None
        self.set_diagnostics_period(values['diagnostics_period'])
        self.pub_model.publish(String(data=self.model_yaml))

    @property
    def subscriptions(self):
        """Subscriptions the executor serves (the sensor loop serves the sensor ones)."""
        yield from (s for s in self._subscriptions if s not in getattr(self, '_hidden', ()))

    def start_sensor_loop(self, priority):
        """Serve the sensor subscriptions on their own thread, at ``priority`` if allowed."""
        realtime.freeze_garbage()
        if priority > 0 and realtime.raise_process(max(1, priority - 1)):
            self.get_logger().info(f'real-time scheduling (SCHED_FIFO) at priority {priority}')
        if self.sensor_loop is not None:
            self.sensor_loop.on_start = lambda: realtime.raise_priority(priority)
            self.sensor_loop.start()

    def destroy_node(self):
        for part in (getattr(self, 'sensor_loop', None), getattr(self, 'worker', None)):
            if part is not None:        # None too where the constructor stopped early
                part.stop()
        return super().destroy_node()

    def set_diagnostics_period(self, period):
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        self.diag_timer = self.create_timer(period, self._publish_diag, clock=self.steady)

    # ------------------------------------------------------------------ inputs
    def _on_take(self, taken):
        """
        Sensor messages taken together ``[(ENCODERS or EMG, msg, info)]``, in publish order.

        Each is read and admitted in turn; then the torques of all admitted encoder
        samples come from one batch and are published, then handed to the identifier.
        """
        started, cpu_started = time.perf_counter(), time.thread_time()
        # the system clock unless simulated time is active (Clock.now() took 15 us here)
        clock = self.get_clock()
        now = clock.now().nanoseconds if clock.ros_time_is_active else time.time_ns()
        with self.lock:
            for kind, msg, info in taken:
                self._read(kind, msg, info, now)
            answers = self.timeline.answer()
        torques = [out for out in answers if type(out) is Torque]
        # every torque first (what the controller waits for), then the muscle states
        for out in torques:
            self.out_torque.publish(out.stamp, out.q, out.qd, out.torque)
            self.step_times.add(time.perf_counter() - started,
                                time.thread_time() - cpu_started)
        for out in torques:
            self.out_muscles.publish(out.stamp, out.activation, out.fibre_velocity, out.force)
        self.timeline.feed()

    def _read(self, kind, msg, info, now):
        """Hand one sensor message to the time line; an unreadable one is counted there."""
        try:
            if kind == ENCODERS:
                stamp, q, qd, tau = self.read_joints(msg)
                self.timeline.admit(stamp, q, qd, tau, now, convert.publish_wall(info),
                                    time.time_ns())
            elif self.emg_stamped:
                self.timeline.on_emg_stamped(*convert.emg_joint_state(msg, self.channel_names))
            else:
                self.timeline.on_emg(convert.emg_chunk(msg, self.intake.channels), now,
                                     convert.publish_wall(info))
        except convert.InputError as err:
            self.timeline.bad_input('joint_states' if kind == ENCODERS else 'emg', err)

    # ------------------------------------------------------------------ identifier
    def _on_result(self, result):
        self.last_result = result
        problem = self.stream_problem
        self.log('info' if result.accepted or not problem else 'error',
                 diagnostics.update_line(result, problem))

    def _on_model(self, model, text, save=True):
        """Swap in and publish a model: accepted (receiver thread), or the template on reset."""
        self.torque.set_model(model)
        self.model_yaml = text
        if self.context.ok():       # a model accepted while stopping is still saved
            self.pub_model.publish(String(data=text))
        if save and self.values['model.save_on_update']:
            self._save(text)

    def _save(self, text):
        saved, message = modelfile.save_text(self.values['model.output_path'], text)
        if not saved:
            self.log('error', message)
        return saved, message

    # ------------------------------------------------------------------ services
    def _on_save(self, request, response):
        response.success, response.message = self._save(self.model_yaml)
        return response

    def _on_reset(self, request, response):
        with self.lock:       # first: samples taken before are not handed over after it
            self.timeline.reset()
        self.worker.command(Reset())
        self._on_model(self.template.model, modelfile.dumps(self.template), save=False)
        response.success, response.message = True, 'back to the template, buffers cleared'
        return response

    def _on_enable(self, request, response):
        self.worker.command(Enable(request.data))
        self.values['identification.enabled'] = bool(request.data)
        response.success, response.message = True, 'identification ' + (
            'enabled' if request.data else 'paused')
        return response

    # ------------------------------------------------------------------ diagnostics
    def diagnostic_statuses(self):
        """[(name, level, message, values)] describing inputs, torque and identifier."""
        statuses, self.stream_problem = diagnostics.collect(
            self.timeline, self.lock, self.values['stale_timeout'], self.step_times, self.worker,
            self.last_result, self.log.throttled)
        return statuses

    def _publish_diag(self):
        self.pub_diag.publish(convert.diagnostics(
            self.get_clock().now().to_msg(), self.get_name(), self.diagnostic_statuses()))


def main(args=None):
    """Entry point of ``diffmsm_node`` (ros2 run / launch)."""
    realtime.prepare_process()
    rclpy.init(args=args)
    node = None
    try:
        node = DiffMsmNode()
        executor = realtime.executor()
        executor.add_node(node)
        node.start_sensor_loop(node.values['torque.realtime_priority'])
        executor.spin()
    except settings.SettingsError as err:
        print(f'diffmsm_node: {err}')
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
