"""Implementations of the ``diffmsm`` subcommands."""

import os
import time

from diffmsm_ros.files.modelfile import ModelFileError
import numpy as np


class UserError(Exception):
    """A problem with the user's input, reported without a traceback."""


def enable_x64():
    """Run the identifier path in float64 (enabled once, before any tracing)."""
    import jax
    jax.config.update('jax_enable_x64', True)


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
