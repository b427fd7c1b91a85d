"""
The published torque's value and accounting through the live node, against MuJoCo.

MuJoCo simulates a hidden subject (the elbow template 15 % off) wearing the exoskeleton
for ``--duration`` s; the session is replayed at real-time pace over localhost DDS to the
node (``diffmsm run --use-sim-time``, its own process) in four set-ups:

- ``true model``: the subject's true model loaded, identification off, envelope EMG in
  10 ms chunks.  Goal: torque RMSE <= 0.3 % of the RMS muscle torque.
- ``live, chunks``: the template loaded, identification on.  Goal: RMSE over the last
  20 s <= 1 %.
- ``live, per sample``: the same with the envelope one sample per message at 500 Hz (and
  ``emg.sample_rate`` left at 1000 Hz: the node must say so).  Goal: >= 99 % of the
  encoder samples answered, updates at their period, RMSE over the last 20 s <= 1 %.
- ``raw``: the true model, raw EMG at 2 kHz in 20-sample chunks, encoders at 1 kHz.
  Printed: the RMSE beside the floor of the identifier's own (non-causal) reading of the
  envelope.

Printed per set-up: encoder samples, torques received, counted late / missing, RMSE
(all, last 20 s), identifier updates.  Exits 1 when a goal is missed.

    python bench/torque_values.py [--duration 90] [--only true,chunks,per_sample,raw]
"""

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time

import numpy as np
import workdir   # this folder (python bench/...)

# the tests' helpers (test/sessions.py), imported where used: after local_dds()
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test'))

SETUPS = ('true', 'chunks', 'per_sample', 'raw')
SEED = 1
LAST = 20.0          # s at the end over which the live error is judged


def local_dds():
    """Keep DDS on this machine, on a domain of this run's own; JAX on the CPU."""
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')


def simulate(root, duration):
    """Simulate the session; write the bags and the truth; return (truth, session, raw)."""
    from diffmsm_ros import templates
    from diffmsm_ros.files import bags, modelfile
    from diffmsm_ros.session import mujoco_sim, raw_emg, record, subjects
    elbow = templates.resolve('elbow')
    truth = subjects.perturb(elbow, 0.15, np.random.default_rng(SEED))
    xml = templates.myo_sim_path('models/legacy/elbow/myoelbow_1dof6muscles_1dofexo.xml')
    session, _ = mujoco_sim.simulate_session(xml, elbow, truth, duration, SEED)
    truth.extra.pop('session', None)
    modelfile.save_atomic(truth, os.path.join(root, 'truth.yaml'))
    for name, chunk in (('chunks', None), ('per_sample', 1)):
        msgs, _ = record.session_messages(truth.model, session, emg_chunk=chunk)
        bags.write_bag(os.path.join(root, name), msgs)
    rng = np.random.default_rng(SEED)
    raw = raw_emg.synthesize(session.t, session.u, record.RAW_RATE, rng, record.RAW_AMPLITUDE)
    fine = np.arange(2 * len(session.t) - 1) * session.t[1] / 2

    def interpolate(x):
        return np.stack([np.interp(fine, session.t, x[:, j]) for j in range(x.shape[1])], -1)

    fast = dataclasses.replace(session, t=fine, q=interpolate(session.q),
                               qd=interpolate(session.qd), tau_exo=interpolate(session.tau_exo))
    msgs, _ = record.session_messages(truth.model, fast, 'raw', raw)
    bags.write_bag(os.path.join(root, 'raw'), msgs)
    return truth, session, raw


@contextlib.contextmanager
def live_node(pfile, log, name):
    """Run the node (its own process) and a listener here; yield (this node, listener)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from diffmsm_ros.nodes.client import Listener, start_node, stop_node
    proc = start_node(pfile, log)
    context = rclpy.Context()
    rclpy.init(args=[name, '--ros-args'], context=context)
    node = rclpy.create_node(name, context=context)
    listener = Listener(node)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        if not listener.ready.wait(600):
            raise RuntimeError(f'node not ready; see {log}')
        yield node, listener
    finally:
        listener.close()
        executor.shutdown()
        node.destroy_node()
        context.shutdown()
        stop_node(proc)


def run_setup(root, name, params, bag, session):
    """Start the node, replay ``bag`` at real-time pace; return the figures."""
    from diffmsm_ros.files import bags
    from diffmsm_ros.nodes.client import write_params
    from diffmsm_ros.nodes.replay import BagReplayer
    from sessions import relative_rmse
    pfile = write_params(os.path.join(root, f'{name}.yaml'), params.pop('model.template'),
                         os.path.join(root, f'{name}_model.yaml'),
                         params.pop('emg.sample_rate'), params)
    log = os.path.join(root, f'{name}.log')
    with live_node(pfile, log, f'torque_values_{name}') as (node, listener):
        BagReplayer(node, bag).play()
        total = sum(1 for _ in bags.read_bag(bag, ['/joint_states']))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with listener.lock:
                tq = dict((listener.diagnostics or {}).get('diffmsm: torque', {}))
            seen = int(float(tq.get('encoder_samples', 0))) + int(float(
                tq.get('encoder_gaps', 0)))
            if seen >= total:
                break
            time.sleep(0.5)
        time.sleep(2.5)      # two more /diagnostics, the last torques in flight
        with listener.lock:
            got = dict(listener.torques)
            diag = dict(listener.diagnostics or {})
    tq, ident = diag.get('diffmsm: torque', {}), diag.get('diffmsm: identifier', {})
    inputs = diag.get('diffmsm: inputs', {})
    return {'total': total, 'received': len(got),
            'late': int(float(tq.get('withheld_late', 0))),
            'gaps': int(float(tq.get('encoder_gaps', 0))),
            'rmse': relative_rmse(got, session, 0.5),
            'rmse_last': relative_rmse(got, session, session.t[-1] - LAST),
            'updates': int(float(ident.get('updates', 0))),
            'accepted': int(float(ident.get('accepted', 0))),
            'dropped': int(float(ident.get('queue_dropped', 0))),
            'resets': int(float(ident.get('buffer_resets', 0))),
            'step_p99': float(tq.get('step_ms_p99', 'nan')),
            'inputs': inputs.get('message', '')}


def floor(truth, session, raw, values):
    """Torque RMSE (%) of the identifier's reading of the raw envelope (lag moved back)."""
    import jax
    from diffmsm_ros import settings
    from diffmsm_ros.emg.intake import EmgIntake
    from diffmsm_ros.identify.excitation import activations
    from diffmsm_ros.identify.window import resample
    from diffmsm_ros.model import dynamics
    model = truth.model
    intake = EmgIntake(settings.emg_config(values), model.muscle_names)
    env = resample(raw[1] - intake.lag, intake.excitations(raw[0]), session.t)
    a = np.asarray(activations(model, env, model.timestep))
    tau = np.asarray(jax.vmap(lambda q, qd, aa: dynamics.muscle_torque(model, q, qd, aa))(
        session.q, session.qd, a))[:, 0]
    keep = session.t >= 0.5
    true = np.asarray(session.tau_mus)[:, 0]
    return 100 * np.sqrt(np.mean((tau - true)[keep] ** 2)) / np.sqrt(np.mean(true ** 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=90.0, help='s of session')
    parser.add_argument('--only', default=','.join(SETUPS), help='set-ups to run')
    parser.add_argument('--keep', action='store_true', help=workdir.KEEP_HELP)
    args = parser.parse_args()
    local_dds()
    from diffmsm_ros import settings
    from diffmsm_ros.jax_setup import configure
    from diffmsm_ros.session import raw_emg, record
    configure()
    root = tempfile.mkdtemp(prefix='diffmsm-torque-')
    print(f'simulating {args.duration:.0f} s with MuJoCo (in {root}) ...', flush=True)
    truth, session, raw = simulate(root, args.duration)
    truth_path = os.path.join(root, 'truth.yaml')
    mvc = [raw_emg.calibrate_mvc(record.RAW_AMPLITUDE, record.RAW_RATE)] * 6
    common = {'model.save_on_update': False, 'identification.period': 1.0}
    setups = {
        'true': ('chunks', dict(common, **{'model.template': truth_path,
                                           'emg.sample_rate': 500.0,
                                           'identification.enabled': False})),
        'chunks': ('chunks', dict(common, **{'model.template': 'elbow',
                                             'emg.sample_rate': 500.0})),
        'per_sample': ('per_sample', dict(common, **{'model.template': 'elbow',
                                                     'emg.sample_rate': 1000.0})),
        'raw': ('raw', dict(common, **{'model.template': truth_path, 'emg.kind': 'raw',
                                       'emg.sample_rate': 2000.0, 'emg.mvc': mvc,
                                       'identification.enabled': False})),
    }
    results = {}
    for name in args.only.split(','):
        bag, params = setups[name]
        print(f'{name}: starting the node and replaying {bag} ...', flush=True)
        results[name] = run_setup(root, name, dict(params), os.path.join(root, bag), session)
    print(f'\n{"set-up":12s} {"samples":>8s} {"torques":>8s} {"late":>6s} {"missing":>8s} '
          f'{"RMSE %":>8s} {"last 20 s":>9s} {"updates":>8s} {"step p99":>9s} '
          f'{"ident. dropped/resets":>21s}')
    for name, r in results.items():
        print(f'{name:12s} {r["total"]:8d} {r["received"]:8d} {r["late"]:6d} {r["gaps"]:8d} '
              f'{r["rmse"]:8.3f} {r["rmse_last"]:9.3f} {r["accepted"]:3d}/{r["updates"]:<4d} '
              f'{r["step_p99"]:8.3f} {r["dropped"]:14d}/{r["resets"]:<6d}')
    failures = []
    if 'true' in results and not results['true']['rmse'] <= 0.3:
        failures.append('true model: RMSE above 0.3 %')
    for name in ('chunks', 'per_sample'):
        if name in results and not results[name]['rmse_last'] <= 1.0:
            failures.append(f'{name}: RMSE over the last 20 s above 1 %')
    for name, r in results.items():
        if r['received'] < 0.99 * r['total']:
            failures.append(f'{name}: {r["received"]} torques for {r["total"]} samples')
    if 'per_sample' in results:
        print(f'\nper sample, the node says: {results["per_sample"]["inputs"]}')
        if 'emg.sample_rate' not in results['per_sample']['inputs']:
            failures.append('per sample: the wrong emg.sample_rate was not reported')
    if 'raw' in results:
        values = dict(settings.defaults(), **{'emg.kind': 'raw', 'emg.sample_rate': 2000.0,
                                              'emg.mvc': mvc})
        base = floor(truth, session, raw, values)
        print(f'raw: RMSE {results["raw"]["rmse"]:.2f} % against a floor of {base:.2f} % '
              f'(the envelope read with its lag moved back, which no live reading can have):'
              f' {results["raw"]["rmse"] / base:.2f} x')
    print('\nGOAL ' + ('MET' if not failures else 'MISSED: ' + '; '.join(failures)))
    workdir.finish(root, args.keep or bool(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
