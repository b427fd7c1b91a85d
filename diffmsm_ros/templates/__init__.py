"""
Bundled subject-model templates and the template spec ``T`` of the command line.

``T`` is a bundled template name (``elbow``), a subject-model YAML path, or ``mjcf:PATH`` to
import a MuJoCo/MyoSuite model.  ``PATH`` may start with ``myo_sim:`` to name a file inside
the installed ``myo-sim`` package, and may end with import options:
``mjcf:PATH?joints=a,b&lock=c:0.5,d:0&muscles=M1,M2&name=N``.
"""

import os
import urllib.parse

from diffmsm_ros.files import modelfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = {'elbow': 'elbow.yaml', 'arm': 'arm.yaml'}
DEFAULT = 'elbow'


def bundled_names():
    return sorted(BUNDLED)


def bundled_path(name):
    return os.path.join(HERE, BUNDLED[name])


def myo_sim_path(relative):
    """Absolute path of a file inside the installed myo-sim package."""
    try:
        import myo_sim
    except ImportError:
        raise modelfile.ModelFileError(
            'myo_sim: paths need the myo-sim package (pip install myo-sim)') from None
    return os.path.join(os.path.dirname(myo_sim.__file__), relative)


def parse_mjcf_spec(spec):
    """Split ``mjcf:PATH?options`` into an absolute path and ImportOptions."""
    from diffmsm_ros.files.mjcf import ImportOptions
    body = spec[len('mjcf:'):]
    path, _, query = body.partition('?')
    if path.startswith('myo_sim:'):
        path = myo_sim_path(path[len('myo_sim:'):])
    options = ImportOptions()
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        items = [v for v in value.split(',') if v]
        if key == 'joints':
            options.joints = tuple(items)
        elif key == 'muscles':
            options.muscles = tuple(items)
        elif key == 'lock':
            for item in items:
                joint, _, angle = item.partition(':')
                try:
                    options.locked[joint] = float(angle or 0.0)
                except ValueError:
                    raise modelfile.ModelFileError(
                        f'{spec}: lock angle {angle!r} is not a number') from None
        elif key == 'name':
            options.name = value
        elif key in ('step', 'step2d'):
            try:
                setattr(options, 'step_1d' if key == 'step' else 'step_2d', float(value))
            except ValueError:
                raise modelfile.ModelFileError(f'{spec}: {key} must be a number') from None
        else:
            raise modelfile.ModelFileError(f'{spec}: unknown import option {key!r}')
    return path, options


def resolve(spec=None):
    """Load the subject model named by a template spec (returns a SubjectFile)."""
    spec = spec or DEFAULT
    if spec in BUNDLED:
        return modelfile.load(bundled_path(spec))
    if spec.startswith('mjcf:'):
        path, options = parse_mjcf_spec(spec)
        if not os.path.isfile(path):
            raise modelfile.ModelFileError(f'{spec}: no such MJCF file {path}')
        try:
            from diffmsm_ros.files.mjcf import import_mjcf
            doc = import_mjcf(path, options)
        except ImportError:
            raise modelfile.ModelFileError(
                'mjcf: templates need the mujoco package (pip install mujoco)') from None
        except ValueError as err:
            raise modelfile.ModelFileError(f'{spec}: {err}') from None
        return modelfile.from_doc(doc)
    if os.path.isfile(spec):
        return modelfile.load(spec)
    raise modelfile.ModelFileError(
        f'template {spec!r}: not a bundled template ({", ".join(bundled_names())}), '
        'not an existing YAML file, and not mjcf:PATH')
