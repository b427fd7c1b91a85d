"""Implementations of the ``diffmsm`` subcommands."""

import dataclasses
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


@dataclasses.dataclass
class Identified:
    """What one offline identification of a session produced (``identify_session``)."""

    template: object          # SubjectFile the identification started from
    subject: object           # SubjectFile of the identified model
    history: object           # offline.History of the online updates
    info: dict                # the final fit (window, grid, problem, analysis, ...)
    duration: float           # s of encoder data in the session
    elapsed: float            # s of wall time the identification took
    accepted: int             # online updates accepted
    path: str = ''            # where the model was written
    report: list = dataclasses.field(default_factory=list)   # report files written


def identify_session(bag, out, template=None, params_file=None, report=None, truth=None,
                     period=None, progress=None):
    """
    Identify one recorded session: the pipeline of ``diffmsm identify``; returns Identified.

    The settings come from ``params_file`` (else the node's defaults, with the EMG rate read
    from the bag), the template from ``template`` (else ``model.template``).  The report
    (if ``report`` names a folder; ``truth`` is a SubjectFile to compare against) is
    written before the model and the model atomically, last: a model file that exists and
    loads marks a finished session.  A report that fails does not cost the model: it is
    saved, then UserError names both.  ``progress(span, done, note)`` hears the session's
    span (s) once with ``done`` None, then the seconds done after each online update.
    Raises UserError (bag missing or unreadable) and RecordingError (EMG that does not fit
    the settings).
    """
    enable_x64()
    from diffmsm_ros.files import bags, modelfile
    from diffmsm_ros.identify import offline, params
    values = load_settings(params_file)
    template = load_template(template or values['model.template'])
    model = template.model
    if not os.path.isdir(bag) and not os.path.isfile(bag):
        raise UserError(f'no bag at {bag}')
    try:
        if not params_file:
            inferred = bags.infer_emg_rate(bag)
            if inferred:
                values['emg.sample_rate'] = round(inferred, 3)
        recording = bags.load_recording(bag, joint_names(values, model),
                                        values['emg.sample_rate'], emg_channels(values, model))
    except UserError:
        raise
    except Exception as err:  # noqa: B902 - rosbags raises many kinds; report them plainly
        raise UserError(f'cannot read {bag}: {err}') from None
    started = time.monotonic()
    span = (max(recording.joint_t[-1], recording.emg_t[-1])
            - min(recording.joint_t[0], recording.emg_t[0]))
    if progress is not None:
        progress(span, None, '')
    sf, history, info = offline.identify_recording(
        template, recording, settings.identify_config(values),
        settings.emg_config(values, model.muscle_names), period=period,
        progress=None if progress is None else lambda done, note: progress(span, done, note))
    done = Identified(template, sf, history, info, recording.joint_t[-1] - recording.joint_t[0],
                      time.monotonic() - started, int(np.sum(history.accepted)))
    failed = None
    if report:
        from diffmsm_ros.identify import report as reports
        space = info['problem'].space
        notes = [f'session {done.duration:.1f} s, identified in {done.elapsed:.1f} s',
                 f'{done.accepted} of {len(history.accepted)} online updates accepted',
                 f'update compute time median {np.median(history.seconds) * 1e3:.0f} ms, '
                 f'max {np.max(history.seconds) * 1e3:.0f} ms']
        notes += [f'warning: {w}' for w in sf.identification.get('warnings', [])]
        try:
            done.report = reports.write_report(
                report, model, sf.model, info['window'], info['grid'], history, space,
                info['analysis'].std, notes,
                None if truth is None else params.values(truth.model, space))
        except Exception as err:  # noqa: B902 - the model is saved first, then this raised
            failed = err
    done.path = modelfile.save_atomic(sf, out)
    if failed is not None:
        raise UserError(f'the model is saved at {done.path}, but its report failed: '
                        f'{type(failed).__name__}: {failed}') from failed
    return done


def identify(args):
    from diffmsm_ros.files import modelfile
    from diffmsm_ros.identify import params
    truth = modelfile.load(args.truth) if args.truth else None
    bar = tqdm(total=0, unit='s', desc='session', disable=args.quiet,
               bar_format='{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s '
               '[{elapsed}<{remaining}]{postfix}')

    def progress(span, done, note):
        if done is None:
            bar.reset(total=round(span, 1))
        else:
            bar.update(round(done, 1) - bar.n)
            bar.set_postfix_str(note, refresh=False)

    with bar:
        found = identify_session(args.bag, args.out, args.template, args.params_file,
                                 args.report, truth, args.period, progress)
    sf, history, info = found.subject, found.history, found.info
    space = info['problem'].space
    print(f'identified {found.duration:.1f} s of session in {found.elapsed:.1f} s '
          f'({found.duration / max(found.elapsed, 1e-9):.1f}x real time); {found.accepted} of '
          f'{len(history.accepted)} online updates accepted; wrote {found.path}')
    template_theta = params.values(found.template.model, space)
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
    if found.report:
        print(f'report: {", ".join(found.report)}')
