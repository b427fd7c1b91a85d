"""
``diffmsm demo``: the main job on the bundled default, end to end over localhost DDS.

Simulates a session of a hidden subject, starts the real node (``diffmsm run``, own
process, ``use_sim_time``), replays the bag with ``/clock``, collects the published
torques, asks the node to save its model, and prints identified vs true parameters, the
torque error, update counts and timing; writes a report.
"""

import os
import shutil
import threading
import time

from diffmsm_ros.cli.commands import enable_x64, load_template, UserError
from diffmsm_ros.nodes.client import call_trigger, Listener, start_node, stop_node, write_params
import numpy as np

READY_TIMEOUT = 600.0     # s for the node to compile and publish its first model


def torque_error(torques, session, t0_ns, h):
    """(relative RMSE of received torques vs the truth, samples matched, samples total)."""
    if not torques:
        return float('nan'), 0, len(session.t)
    stamps = np.array([s for s, _ in torques])
    values = np.array([v for _, v in torques], dtype=float)
    idx = np.round((stamps - t0_ns) * 1e-9 / h).astype(int)
    ok = (idx >= 0) & (idx < len(session.t))
    est, true = values[ok], np.asarray(session.tau_mus)[idx[ok]]
    rel = np.sqrt(np.mean((est - true) ** 2)) / np.sqrt(np.mean(true ** 2))
    return float(rel), int(ok.sum()), len(session.t)


def demo(args):
    """Simulate, run the node, replay, compare (see the module docstring)."""
    enable_x64()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from diffmsm_ros.files import modelfile
    from diffmsm_ros.identify import params as params_mod
    from diffmsm_ros.nodes.replay import BagReplayer
    from diffmsm_ros.session import record
    template = load_template(args.template)
    out = os.path.abspath(args.out)
    session_dir = os.path.join(out, 'session')
    if os.path.exists(session_dir):
        shutil.rmtree(session_dir)
    os.makedirs(out, exist_ok=True)
    duration = args.duration or 60.0
    print(f'1/4 simulating {duration:.0f} s of a hidden subject (10 % from {args.template})',
          flush=True)
    bag, session = record.record(template, session_dir, duration, seed=1, perturb=0.1)
    truth = modelfile.load(os.path.join(session_dir, 'truth.yaml'))
    rate = truth.extra['session']['emg']['sample_rate']
    model_path = os.path.join(out, 'identified.yaml')
    if os.path.exists(model_path):
        os.remove(model_path)
    params_file = write_params(os.path.join(out, 'params.yaml'), args.template, model_path,
                               rate)
    print('2/4 starting the node (compiling once, before it reports ready)', flush=True)
    started = time.monotonic()
    proc = start_node(params_file, os.path.join(out, 'node.log'))
    rclpy.init(args=['diffmsm_demo', '--ros-args'])
    node = rclpy.create_node('diffmsm_demo')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    listener = None
    try:
        listener = Listener(node)
        spinner.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not listener.ready.wait(0.5):
            if proc.poll() is not None:
                raise UserError(f'the node exited early; see {out}/node.log')
            if time.monotonic() > deadline:
                raise UserError('the node did not become ready')
        print(f'    ready after {time.monotonic() - started:.1f} s', flush=True)
        speed = args.rate or 1.0
        print(f'3/4 replaying the bag at {speed:g}x with /clock over localhost DDS',
              flush=True)
        player = BagReplayer(node, bag, rate=speed)
        replay_started = time.monotonic()
        player.play()
        replay_seconds = time.monotonic() - replay_started
        _wait_for_torques(listener, len(session.t))
        reply = call_trigger(node, '/diffmsm/save_model')
        if reply is None:
            raise UserError('save_model did not answer')
        if not reply.success:
            raise UserError(f'save_model failed: {reply.message}')
        with listener.lock:
            torques = list(listener.torques)
            diag = dict(listener.diagnostics or {})
            models = len(listener.models)
    finally:
        if listener is not None:
            listener.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
        code = stop_node(proc)
    identified = modelfile.load(reply.message)
    print(f'4/4 results (node exit code {code}; replay took {replay_seconds:.1f} s)')
    from diffmsm_ros.identify.params import make_space
    space = make_space(template.model, template.bounds, params_mod.DEFAULT_SELECTION)
    th_t = params_mod.values(truth.model, space)
    th_i = params_mod.values(identified.model, space)
    th_0 = params_mod.values(template.model, space)
    muscles = space.mask(lambda e: e.section == 'muscles')
    print(f'{"parameter":40s} {"template":>11s} {"identified":>11s} {"truth":>11s} '
          f'{"error %":>8s}')
    errors = []
    for k, label in enumerate(space.labels()):
        err = 100.0 * (th_i[k] - th_t[k]) / abs(th_t[k])
        if muscles[k]:
            errors.append(abs(err))
        print(f'{label:40s} {th_0[k]:11.5g} {th_i[k]:11.5g} {th_t[k]:11.5g} {err:8.3f}')
    t0_ns = record.T0_NS
    rel, matched, total = torque_error(torques, session, t0_ns, truth.model.timestep)
    half = t0_ns + int(0.5 * duration * 1e9)
    rel_late, _, _ = torque_error([x for x in torques if x[0] >= half], session, t0_ns,
                                  truth.model.timestep)
    quarter = t0_ns + int(0.75 * duration * 1e9)
    rel_last, _, _ = torque_error([x for x in torques if x[0] >= quarter], session, t0_ns,
                                  truth.model.timestep)
    ident = diag.get('diffmsm: identifier', {})
    tq = diag.get('diffmsm: torque', {})
    start_err = np.mean(np.abs(th_0 - th_t)[muscles] / np.abs(th_t[muscles])) * 100
    lines = [
        f'muscle parameters: mean error {np.mean(errors):.3f} % (max {np.max(errors):.3f} %),'
        f' template was {start_err:.2f} % off',
        f'torques received: {matched} for {total} encoder samples; predicted muscle torque '
        f'RMSE {100 * rel_late:.2f} % of its RMS over the second half of the session, '
        f'{100 * rel_last:.2f} % over the last quarter ({100 * rel:.1f} % over the whole '
        'session, the template model at first)',
        f'identifier: {ident.get("updates", "?")} updates, {ident.get("accepted", "?")} '
        f'accepted, {ident.get("rejected", "?")} rejected, last update '
        f'{float(ident.get("update_s", "nan")) * 1e3:.0f} ms; {models} subject models '
        'received',
        f'torque path: p50 {tq.get("step_ms_p50", "?")} ms, p99 {tq.get("step_ms_p99", "?")}'
        f' ms, max {tq.get("step_ms_max", "?")} ms per encoder sample',
        f'model written to {reply.message}']
    for line in lines:
        print(line)
    _write_report(out, lines, space.labels(), th_0, th_i, th_t, torques, session, t0_ns,
                  truth.model.joint_names)
    print(f'report: {os.path.join(out, "summary.md")}')
    if not np.mean(errors) <= 2.0:
        raise UserError(f'identified muscle parameters are {np.mean(errors):.2f} % off the '
                        'truth (target 2 %)')


def _wait_for_torques(listener, expected, idle=3.0, limit=60.0):
    """Until every encoder sample got its torque, or nothing new arrived for ``idle`` s."""
    last_count, last_change, started = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - started < limit:
        with listener.lock:
            count = len(listener.torques)
        if count >= expected:
            return
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > idle:
            return
        time.sleep(0.1)


def _write_report(out, lines, labels, th_0, th_i, th_t, torques, session, t0_ns,
                  session_joint_names):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = ['| parameter | template | identified | truth | error % |', '|---|---|---|---|---|']
    for k, label in enumerate(labels):
        err = 100.0 * (th_i[k] - th_t[k]) / abs(th_t[k])
        rows.append(f'| {label} | {th_0[k]:.6g} | {th_i[k]:.6g} | {th_t[k]:.6g} | '
                    f'{err:.3f} |')
    with open(os.path.join(out, 'summary.md'), 'w', encoding='utf-8') as fh:
        fh.write('# diffmsm demo\n\n' + '\n'.join(f'- {x}' for x in lines) + '\n\n'
                 + '\n'.join(rows) + '\n\n![torque](torque.png)\n')
    if torques:
        stamps = np.array([s for s, _ in torques])
        values = np.array([v for _, v in torques], dtype=float)
        t = (stamps - t0_ns) * 1e-9
        names = list(session_joint_names)
        fig, axes = plt.subplots(len(names), 1, figsize=(10, 3 * len(names)), squeeze=False)
        for j, ax in enumerate(axes[:, 0]):
            ax.plot(session.t, np.asarray(session.tau_mus)[:, j], label='true muscle torque')
            ax.plot(t, values[:, j], label='published by the node', alpha=0.8)
            ax.set_title(names[j])
            ax.set_xlabel('session time (s)')
            ax.set_ylabel('N m')
            ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, 'torque.png'), dpi=100)
        plt.close(fig)
