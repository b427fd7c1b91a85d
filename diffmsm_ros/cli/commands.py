"""Implementations of the ``diffmsm`` subcommands."""

import os
import time

from diffmsm_ros import settings
from diffmsm_ros.files.modelfile import ModelFileError
import numpy as np
from tqdm import tqdm


class UserError(Exception):
    """A problem with the user's input, reported without a traceback."""


def enable_x64():
    """Run in float64 (enabled once, before any tracing) with a persistent JIT cache."""
    from diffmsm_ros.jax_setup import configure
    configure()


def load_template(spec):
    from diffmsm_ros import templates
    try:
        return templates.resolve(spec)
    except ModelFileError as err:
        raise UserError(str(err)) from None


def simulate(args):
    enable_x64()
    from diffmsm_ros.session import record
    template = load_template(args.template)
    started = time.monotonic()
    try:
        bag, session = record.record(template, args.out, args.duration, args.seed,
                                     args.perturb, args.emg, args.storage, args.noise)
    except (ValueError, FileExistsError) as err:
        raise UserError(str(err)) from None
    print_session_summary(template, session, bag, time.monotonic() - started)
    params = os.path.join(os.path.dirname(bag), 'params.yaml')
    print(f'EMG settings: {params} (diffmsm identify {bag} --params-file {params} ...)')


def print_session_summary(template, session, bag, seconds):
    from diffmsm_ros.files import bags
    model = template.model
    print(f'session: {session.t[-1] + model.timestep:.1f} s of {model.name} '
          f'({model.n_joints} joint(s), {model.n_muscles} muscles), simulated and written '
          f'in {seconds:.1f} s')
    for j, name in enumerate(model.joint_names):
        q = session.q[:, j]
        err = np.sqrt(np.mean((q - session.q_ref[:, j]) ** 2))
        print(f'  {name}: angle {q.min():.2f}..{q.max():.2f} rad, tracking error RMS '
              f'{err:.3f} rad, exo torque RMS {np.sqrt(np.mean(session.tau_exo[:, j] ** 2)):.2f}'
              f' N m, muscle torque RMS {np.sqrt(np.mean(session.tau_mus[:, j] ** 2)):.2f} N m')
    print(f'  excitation mean {session.u.mean():.3f}, max {session.u.max():.3f}')
    print(f'bag: {bag}')
    for topic, (msgtype, count) in sorted(bags.bag_summary(bag).items()):
        print(f'  {topic:16s} {msgtype:34s} {count} messages')


def import_model(args):
    enable_x64()
    from diffmsm_ros.files import modelfile
    if not args.template.startswith('mjcf:'):
        raise UserError('import takes mjcf:PATH')
    sf = load_template(args.template)
    path = modelfile.save_atomic(sf, args.out)
    print(f'wrote {path}: {sf.model.n_joints} joint(s), {sf.model.n_muscles} muscles')


def demo(args):
    enable_x64()
    from diffmsm_ros.session import record
    template = load_template(args.template)
    out = args.out
    bag_dir = os.path.join(out, 'session')
    if os.path.exists(bag_dir):
        import shutil
        shutil.rmtree(bag_dir)
    started = time.monotonic()
    bag, session = record.record(template, bag_dir, args.duration or 60.0, seed=1,
                                 perturb=0.1)
    print_session_summary(template, session, bag, time.monotonic() - started)


def load_settings(path):
    try:
        return settings.load_file(path) if path else settings.defaults()
    except settings.SettingsError as err:
        raise UserError(str(err)) from None


def joint_names(values, model):
    """Names to read from joint_states, in model joint order."""
    names = [n for n in values['joints'] if n]
    if not names:
        return list(model.joint_names)
    if len(names) != model.n_joints:
        raise UserError(f'joints lists {len(names)} names; the model has {model.n_joints} '
                        f'joints {list(model.joint_names)}')
    return names


def emg_channels(values, model):
    try:
        config = settings.emg_config(values, model.muscle_names)
    except settings.SettingsError as err:
        raise UserError(str(err)) from None
    return config.channel_names(model.muscle_names)


def identify(args):
    enable_x64()
    from diffmsm_ros.files import bags, modelfile
    from diffmsm_ros.identify import offline, params
    values = load_settings(args.params_file)
    template = load_template(args.template or values['model.template'])
    model = template.model
    if not os.path.isdir(args.bag) and not os.path.isfile(args.bag):
        raise UserError(f'no bag at {args.bag}')
    rate = values['emg.sample_rate']
    if not args.params_file:
        inferred = bags.infer_emg_rate(args.bag)
        if inferred:
            rate = values['emg.sample_rate'] = round(inferred, 3)
    try:
        recording = bags.load_recording(args.bag, joint_names(values, model), rate,
                                        emg_channels(values, model))
    except Exception as err:  # noqa: B902 - rosbags raises many kinds; report them plainly
        raise UserError(f'cannot read {args.bag}: {err}') from None
    started = time.monotonic()
    span = (max(recording.joint_t[-1], recording.emg_t[-1])
            - min(recording.joint_t[0], recording.emg_t[0]))
    with tqdm(total=round(span, 1), unit='s', desc='session', disable=args.quiet,
              bar_format='{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s '
              '[{elapsed}<{remaining}]{postfix}') as bar:
        sf, history, info = offline.identify_recording(
            template, recording, settings.identify_config(values),
            settings.emg_config(values, model.muscle_names), period=args.period,
            progress=lambda done, note: (bar.update(round(done, 1) - bar.n),
                                         bar.set_postfix_str(note, refresh=False)))
    elapsed = time.monotonic() - started
    path = modelfile.save_atomic(sf, args.out)
    duration = recording.joint_t[-1] - recording.joint_t[0]
    space = info['problem'].space
    accepted = int(np.sum(history.accepted))
    print(f'identified {duration:.1f} s of session in {elapsed:.1f} s '
          f'({duration / max(elapsed, 1e-9):.1f}x real time); {accepted} of '
          f'{len(history.accepted)} online updates accepted; wrote {path}')
    truth = None
    if args.truth:
        truth = modelfile.load(args.truth)
    template_theta = params.values(model, space)
    theta = params.values(sf.model, space)
    truth_theta = params.values(truth.model, space) if truth else None
    print(f'{"parameter":42s} {"template":>12s} {"identified":>12s} {"1-sigma":>10s}'
          + (f' {"truth":>12s} {"error %":>9s}' if truth else ''))
    for k, label in enumerate(space.labels()):
        line = (f'{label:42s} {template_theta[k]:12.6g} {theta[k]:12.6g} '
                f'{info["analysis"].std[k]:10.3g}')
        if truth:
            err = 100 * (theta[k] - truth_theta[k]) / abs(truth_theta[k])
            line += f' {truth_theta[k]:12.6g} {err:9.4f}'
        print(line)
    for warning in sf.identification.get('warnings', []):
        print(f'warning: {warning}')
    if args.report:
        from diffmsm_ros.identify import report
        notes = [f'session {duration:.1f} s, identified in {elapsed:.1f} s',
                 f'{accepted} of {len(history.accepted)} online updates accepted',
                 f'update compute time median {np.median(history.seconds) * 1e3:.0f} ms, '
                 f'max {np.max(history.seconds) * 1e3:.0f} ms']
        notes += [f'warning: {w}' for w in sf.identification.get('warnings', [])]
        paths = report.write_report(args.report, model, sf.model, info['window'], info['grid'],
                                    history, space, info['analysis'].std, notes, truth_theta)
        print(f'report: {", ".join(paths)}')
