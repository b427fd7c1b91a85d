"""
Subject-model files (YAML, format ``diffmsm.subject/1``): load, validate, dump, save.

A file holds joints, segments and muscles with their parameters in SI units, per-muscle
geometry tables, optional bounds and 1-sigma uncertainties, and an ``identification``
section.  Loading validates everything and raises ``ModelFileError`` with the offending key;
saving is atomic (temporary file, fsync, rename), so a crash never leaves a half-written
model in place of a good one.
"""

import copy
import dataclasses
import math
import os
import tempfile

from diffmsm_ros.identify.bounds import default_bounds
from diffmsm_ros.model import schema
from diffmsm_ros.model.geometry import GeometryBlock
from diffmsm_ros.model.muscles import CURVE_DEFAULTS, FAMILIES, HILL_FIELDS, Muscles
from diffmsm_ros.model.skeleton import Skeleton
from diffmsm_ros.model.subject import SubjectModel
import numpy as np
import yaml

FORMAT = 'diffmsm.subject/1'


class ModelFileError(ValueError):
    """A subject-model file that cannot be used, with the reason."""


@dataclasses.dataclass
class SubjectFile:
    """A subject model plus what the file says about it besides the numbers."""

    model: SubjectModel
    bounds: dict = dataclasses.field(default_factory=dict)
    std: dict = dataclasses.field(default_factory=dict)
    identification: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers

def _fail(where, message):
    raise ModelFileError(f'{where}: {message}')


def _number(value, where, lo=None, hi=None, unit=''):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, f'expected a number, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
        _fail(where, f'must be finite, got {value}')
    if lo is not None and value < lo or hi is not None and value > hi:
        _fail(where, f'{value} {unit} is outside the plausible range [{lo}, {hi}] {unit} '
              '(values are SI: m, kg, s, N)')
    return value


def _plausible(value, where, key):
    unit, lo, hi = schema.SPECS[key]
    return _number(value, where, lo, hi, unit)


def _vector(value, where, size):
    if not isinstance(value, (list, tuple)) or len(value) != size:
        _fail(where, f'expected a list of {size} numbers, got {value!r}')
    return [_number(v, f'{where}[{i}]') for i, v in enumerate(value)]


def _mapping(doc, key, where):
    value = doc.get(key)
    if not isinstance(value, dict) or not value:
        _fail(where, f'{key!r} must be a non-empty mapping')
    return value


def _array(value, where, ndim):
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        _fail(where, 'expected a (nested) list of numbers')
    if arr.ndim != ndim:
        _fail(where, f'expected {ndim} dimension(s), got shape {arr.shape}')
    if not np.all(np.isfinite(arr)):
        _fail(where, 'contains non-finite values')
    return arr


# ----------------------------------------------------------------------------- reading

def _read_joints(doc, segment_names):
    joints = _mapping(doc, 'joints', 'file')
    rows = []
    for name, j in joints.items():
        where = f'joints.{name}'
        if not isinstance(j, dict):
            _fail(where, 'must be a mapping')
        seg = j.get('segment')
        if seg not in segment_names:
            _fail(where, f'segment {seg!r} is not listed under segments')
        axis = np.array(_vector(j.get('axis', [0, 0, 1]), f'{where}.axis', 3))
        if np.linalg.norm(axis) < 1e-9:
            _fail(f'{where}.axis', 'must not be zero')
        rng = _vector(j.get('range', [-math.pi, math.pi]), f'{where}.range', 2)
        if rng[0] >= rng[1]:
            _fail(f'{where}.range', 'lower limit must be below the upper limit')
        rows.append({
            'name': name, 'segment': seg, 'axis': axis,
            'pos': np.array(_vector(j.get('pos', [0, 0, 0]), f'{where}.pos', 3)),
            'range': rng,
            'damping': _plausible(j.get('damping', 0.0), f'{where}.damping', 'damping'),
            'armature': _plausible(j.get('armature', 0.0), f'{where}.armature', 'armature')})
    if [r['segment'] for r in rows] != list(segment_names):
        _fail('joints', 'each joint must move its own segment, listed in the same order as '
              'segments (root to tip)')
    return rows


def _read_segments(doc):
    segs = _mapping(doc, 'segments', 'file')
    rows = []
    for name, s in segs.items():
        where = f'segments.{name}'
        if not isinstance(s, dict):
            _fail(where, 'must be a mapping')
        inertia = _vector(s.get('inertia'), f'{where}.inertia', 6)
        tensor = np.array([[inertia[0], inertia[3], inertia[4]],
                           [inertia[3], inertia[1], inertia[5]],
                           [inertia[4], inertia[5], inertia[2]]])
        if np.min(np.linalg.eigvalsh(tensor)) <= 0:
            _fail(f'{where}.inertia', 'must be positive definite (xx yy zz xy xz yz, kg m^2)')
        frame = s.get('frame', {})
        if not isinstance(frame, dict):
            _fail(f'{where}.frame', 'must be a mapping with pos and quat')
        quat = _vector(frame.get('quat', [1, 0, 0, 0]), f'{where}.frame.quat', 4)
        if np.linalg.norm(quat) < 1e-9:
            _fail(f'{where}.frame.quat', 'must not be zero')
        rows.append({
            'name': name, 'mass': _plausible(s.get('mass'), f'{where}.mass', 'mass'),
            'com': _vector(s.get('com'), f'{where}.com', 3), 'inertia': inertia,
            'frame_pos': _vector(frame.get('pos', [0, 0, 0]), f'{where}.frame.pos', 3),
            'frame_quat': quat})
    return rows


def _read_curve(family, m, where):
    curve = {}
    for key, default in CURVE_DEFAULTS[family].items():
        if key in ('range0', 'range1'):
            continue
        curve[key] = _number(m.get(key, default), f'{where}.{key}')
    if family == 'mujoco':
        rng = _vector(m.get('range', [CURVE_DEFAULTS['mujoco']['range0'],
                                      CURVE_DEFAULTS['mujoco']['range1']]),
                      f'{where}.range', 2)
        if not 0 < rng[0] < rng[1]:
            _fail(f'{where}.range', 'must satisfy 0 < range[0] < range[1]')
        curve['range0'], curve['range1'] = rng
        if not 0 <= curve['lmin'] < 1 < curve['lmax']:
            _fail(where, '0 <= lmin < 1 < lmax is required (normalised lengths)')
        if curve['fvmax'] <= 1 or curve['vmax'] <= 0 or curve['fpmax'] < 0:
            _fail(where, 'fvmax > 1, vmax > 0 and fpmax >= 0 are required')
    else:
        if m.get('tendon', 'rigid') != 'rigid':
            _fail(f'{where}.tendon', 'only a rigid tendon is supported for degroote2016')
        if curve['vmax'] <= 0:
            _fail(f'{where}.vmax', 'must be positive')
    return curve


def _hill_from_lengthrange(m, curve, where):
    lr = _vector(m['lengthrange'], f'{where}.lengthrange', 2)
    l0 = (lr[1] - lr[0]) / (curve['range1'] - curve['range0'])
    return l0, lr[0] - curve['range0'] * l0


def _read_geometry(m, where, joint_names):
    g = m.get('geometry')
    if not isinstance(g, dict):
        _fail(f'{where}.geometry', 'missing: every muscle needs its length tables')
    joints = g.get('joints')
    if (not isinstance(joints, list) or not 1 <= len(joints) <= 2
            or any(j not in joint_names for j in joints) or len(set(joints)) != len(joints)):
        _fail(f'{where}.geometry.joints', f'must list one or two of the model joints '
              f'{list(joint_names)}, got {joints!r}')
    dims = len(joints)
    start = _vector(g.get('start'), f'{where}.geometry.start', dims)
    step = _vector(g.get('step'), f'{where}.geometry.step', dims)
    if min(step) <= 0:
        _fail(f'{where}.geometry.step', 'must be positive')
    length = _array(g.get('length'), f'{where}.geometry.length', dims)
    if min(length.shape) < 2:
        _fail(f'{where}.geometry.length', 'needs at least two grid nodes per joint')
    moment = g.get('moment')
    if not isinstance(moment, list) or len(moment) != dims:
        _fail(f'{where}.geometry.moment', f'expected {dims} table(s), one per joint')
    tables = [length] + [_array(t, f'{where}.geometry.moment[{d}]', dims)
                         for d, t in enumerate(moment)]
    if dims == 2:
        tables.append(_array(g.get('cross'), f'{where}.geometry.cross', 2))
    for t in tables:
        if t.shape != length.shape:
            _fail(f'{where}.geometry', 'all tables must have the shape of length')
    return {'joints': tuple(joint_names.index(j) for j in joints), 'start': start,
            'step': step, 'tables': np.stack(tables)}


def _read_muscles(doc, family, joint_names):
    muscles = _mapping(doc, 'muscles', 'file')
    rows = []
    for name, m in muscles.items():
        where = f'muscles.{name}'
        if not isinstance(m, dict):
            _fail(where, 'must be a mapping')
        curve = _read_curve(family, m, where)
        row = {'name': name, 'curve': curve}
        if family == 'mujoco' and 'lengthrange' in m and (
                'optimal_fiber_length' not in m or 'tendon_slack_length' not in m):
            row['optimal_fiber_length'], row['tendon_slack_length'] = _hill_from_lengthrange(
                m, curve, where)
        defaults = {'tau_act': 0.01 if family == 'mujoco' else 0.015,
                    'tau_deact': 0.04 if family == 'mujoco' else 0.06,
                    'emg_gain': 1.0, 'emg_delay': 0.0}
        for key in HILL_FIELDS:
            if key in row:
                _plausible(row[key], f'{where}.{key}', key)
                continue
            if key not in m and key not in defaults:
                _fail(where, f'missing {key}')
            row[key] = _plausible(m.get(key, defaults.get(key)), f'{where}.{key}', key)
        if family == 'mujoco':
            lr0 = row['tendon_slack_length'] + curve['range0'] * row['optimal_fiber_length']
            if lr0 <= 0:
                _fail(where, 'tendon_slack_length + range[0]*optimal_fiber_length must be '
                      'positive (the lengthrange must start above zero)')
        elif row['tendon_slack_length'] <= 0:
            _fail(f'{where}.tendon_slack_length', 'must be positive for degroote2016')
        row['geometry'] = _read_geometry(m, where, joint_names)
        rows.append(row)
    return rows


def _blocks(muscle_rows):
    """Group muscles with identical spans and grids into geometry blocks."""
    groups = {}
    for i, row in enumerate(muscle_rows):
        g = row['geometry']
        key = (g['joints'], tuple(g['start']), tuple(g['step']), g['tables'].shape)
        groups.setdefault(key, []).append(i)
    blocks = []
    for (joints, start, step, _), members in groups.items():
        tables = np.stack([muscle_rows[i]['geometry']['tables'] for i in members])
        blocks.append(GeometryBlock(start=np.array(start), step=np.array(step),
                                    tables=tables, joints=joints, muscles=tuple(members)))
    return tuple(blocks)


def from_doc(doc):
    """Validate a parsed YAML document and build the subject model."""
    if not isinstance(doc, dict):
        raise ModelFileError('file: not a YAML mapping')
    if doc.get('format') != FORMAT:
        _fail('format', f'expected {FORMAT!r}, got {doc.get("format")!r}')
    family = doc.get('curves', 'mujoco')
    if family not in FAMILIES:
        _fail('curves', f'unknown family {family!r}; expected one of {list(FAMILIES)}')
    timestep = _plausible(doc.get('timestep', 0.002), 'timestep', 'timestep')
    gravity = _vector(doc.get('gravity', [0, 0, -9.81]), 'gravity', 3)
    segs = _read_segments(doc)
    joints = _read_joints(doc, [s['name'] for s in segs])
    joint_names = [j['name'] for j in joints]
    mus = _read_muscles(doc, family, joint_names)

    skeleton = Skeleton(
        joint_axis=np.array([j['axis'] for j in joints]),
        joint_pos=np.array([j['pos'] for j in joints]),
        frame_pos=np.array([s['frame_pos'] for s in segs]),
        frame_quat=np.array([s['frame_quat'] for s in segs]),
        mass=np.array([s['mass'] for s in segs]), com=np.array([s['com'] for s in segs]),
        inertia=np.array([s['inertia'] for s in segs]),
        damping=np.array([j['damping'] for j in joints]),
        armature=np.array([j['armature'] for j in joints]),
        gravity=np.array(gravity), joint_range=np.array([j['range'] for j in joints]),
        joint_names=tuple(joint_names), segment_names=tuple(s['name'] for s in segs))
    curve_keys = list(mus[0]['curve'])
    muscles = Muscles(
        **{k: np.array([m[k] for m in mus]) for k in HILL_FIELDS},
        curve={k: np.array([m['curve'][k] for m in mus]) for k in curve_keys},
        family=family, names=tuple(m['name'] for m in mus))
    model = SubjectModel(muscles=muscles, geometry=_blocks(mus), skeleton=skeleton,
                         name=str(doc.get('name', 'subject')), timestep=timestep)
    bounds = default_bounds(model)
    _merge_bounds(bounds, doc, model)
    std = _read_std(doc)
    known = {'format', 'name', 'curves', 'timestep', 'gravity', 'joints', 'segments',
             'muscles', 'identification'}
    extra = {k: copy.deepcopy(v) for k, v in doc.items() if k not in known}
    ident = doc.get('identification') or {}
    if not isinstance(ident, dict):
        _fail('identification', 'must be a mapping')
    sf = SubjectFile(model=model, bounds=bounds, std=std, identification=ident, extra=extra)
    check_bounds(sf)
    return sf


# ----------------------------------------------------------------------------- bounds

def _merge_bounds(bounds, doc, model):
    for section in schema.SECTIONS:
        for name, entry in doc[section].items():
            given = entry.get('bounds') if isinstance(entry, dict) else None
            if given is None:
                continue
            if not isinstance(given, dict):
                _fail(f'{section}.{name}.bounds', 'must be a mapping field -> [low, high]')
            for field, pair in given.items():
                where = f'{section}.{name}.bounds.{field}'
                current = bounds[section][name].get(field)
                if current is None:
                    _fail(where, f'{field!r} has no bounds to set')
                if isinstance(current[0], list):
                    pairs = [_vector(p, f'{where}[{k}]', 2) for k, p in enumerate(pair)]
                    if len(pairs) != len(current):
                        _fail(where, f'expected {len(current)} [low, high] pairs')
                else:
                    pairs = _vector(pair, where, 2)
                for lo, hi in (pairs if isinstance(pairs[0], list) else [pairs]):
                    if lo > hi:
                        _fail(where, 'low must not exceed high')
                bounds[section][name][field] = pairs


def _read_std(doc):
    std = {}
    for section in schema.SECTIONS:
        for name, entry in doc[section].items():
            if isinstance(entry, dict) and isinstance(entry.get('std'), dict):
                std.setdefault(section, {})[name] = copy.deepcopy(entry['std'])
    return std


def parameter_value(model, section, name, field):
    """Return the current value of one named parameter (float or list)."""
    arrays, names = schema.holder(model, section)
    return np.asarray(getattr(arrays, field))[names.index(name)].tolist()


def check_bounds(sf, tol=1e-12):
    """Raise ModelFileError if any bounded parameter lies outside its bounds."""
    for section, names in sf.bounds.items():
        for name, fields in names.items():
            for field, pair in fields.items():
                value = parameter_value(sf.model, section, name, field)
                values = value if isinstance(value, list) else [value]
                pairs = pair if isinstance(pair[0], list) else [pair]
                for v, (lo, hi) in zip(values, pairs):
                    span = tol * max(1.0, abs(lo), abs(hi))
                    if not lo - span <= v <= hi + span:
                        _fail(f'{section}.{name}.{field}',
                              f'value {v} is outside its bounds [{lo}, {hi}]')


def check_compatible(sf, template):
    """Raise unless the model has the template's joints, muscles and segments, in order."""
    a, b = sf.model, template.model
    for what, mine, theirs in (('joints', a.joint_names, b.joint_names),
                               ('muscles', a.muscle_names, b.muscle_names),
                               ('segments', a.skeleton.segment_names,
                                b.skeleton.segment_names)):
        if tuple(mine) != tuple(theirs):
            raise ModelFileError(f'{what} {list(mine)} do not match the template '
                                 f'{list(theirs)}')
    if a.muscles.family != b.muscles.family:
        raise ModelFileError(f'curves {a.muscles.family!r} do not match the template '
                             f'{b.muscles.family!r}')


# ----------------------------------------------------------------------------- writing

def _f(x):
    return float(x)


def to_doc(sf):
    """Return the YAML document (plain dict) for a subject file."""
    model = sf.model
    mus, sk = model.muscles, model.skeleton
    doc = {'format': FORMAT, 'name': model.name, 'curves': mus.family,
           'timestep': float(model.timestep), 'gravity': [_f(g) for g in sk.gravity]}
    joints = {}
    for i, name in enumerate(sk.joint_names):
        joints[name] = {
            'segment': sk.segment_names[i], 'damping': _f(sk.damping[i]),
            'armature': _f(sk.armature[i]),
            'range': [_f(v) for v in sk.joint_range[i]],
            'axis': [_f(v) for v in sk.joint_axis[i]],
            'pos': [_f(v) for v in sk.joint_pos[i]]}
    segments = {}
    for i, name in enumerate(sk.segment_names):
        segments[name] = {
            'mass': _f(sk.mass[i]), 'com': [_f(v) for v in sk.com[i]],
            'inertia': [_f(v) for v in sk.inertia[i]],
            'frame': {'pos': [_f(v) for v in sk.frame_pos[i]],
                      'quat': [_f(v) for v in sk.frame_quat[i]]}}
    muscles = {}
    geometry = {}
    for block in model.geometry:
        tables = np.asarray(block.tables)
        dims = len(block.joints)
        for k, i in enumerate(block.muscles):
            entry = {'joints': [sk.joint_names[j] for j in block.joints],
                     'start': [_f(v) for v in block.start],
                     'step': [_f(v) for v in block.step],
                     'length': tables[k, 0].tolist(),
                     'moment': [tables[k, 1 << d].tolist() for d in range(dims)]}
            if dims == 2:
                entry['cross'] = tables[k, 3].tolist()
            geometry[i] = entry
    for i, name in enumerate(mus.names):
        entry = {k: _f(getattr(mus, k)[i]) for k in HILL_FIELDS}
        curve = {k: _f(v[i]) for k, v in mus.curve.items()}
        if mus.family == 'mujoco':
            r0, r1 = curve.pop('range0'), curve.pop('range1')
            curve['range'] = [r0, r1]
            l0, tsl = entry['optimal_fiber_length'], entry['tendon_slack_length']
            curve['lengthrange'] = [tsl + r0 * l0, tsl + r1 * l0]
        entry.update(curve)
        entry['geometry'] = geometry[i]
        muscles[name] = entry
    doc['joints'], doc['segments'], doc['muscles'] = joints, segments, muscles
    for section in schema.SECTIONS:
        for name, fields in sf.bounds.get(section, {}).items():
            doc[section][name]['bounds'] = copy.deepcopy(fields)
        for name, fields in sf.std.get(section, {}).items():
            if name in doc[section]:
                doc[section][name]['std'] = copy.deepcopy(fields)
    for key, value in sf.extra.items():
        doc[key] = copy.deepcopy(value)
    if sf.identification:
        doc['identification'] = copy.deepcopy(sf.identification)
    return doc


class _Dumper(getattr(yaml, 'CSafeDumper', yaml.SafeDumper)):
    """The safe dumper, with libyaml's emitter where PyYAML has it (the same text, 3-6x faster)."""


def _represent_list(dumper, data):
    flow = all(not isinstance(v, (dict, list)) for v in data) or all(
        isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v) for v in data)
    return dumper.represent_sequence('tag:yaml.org,2002:seq', data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)
_Dumper.add_representer(np.float64, lambda d, v: d.represent_float(float(v)))


def dumps(sf):
    """Return the YAML text of a subject file (floats written exactly)."""
    return yaml.dump(to_doc(sf), Dumper=_Dumper, sort_keys=False, width=100)


def loads(text):
    """Parse and validate YAML text."""
    try:
        # the C loader when PyYAML has it (a two-joint template loads ten times faster)
        doc = yaml.load(text, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ModelFileError(f'file: not valid YAML ({err})') from None
    return from_doc(doc)


def load(path):
    """Load and validate a subject-model file."""
    try:
        with open(path, encoding='utf-8') as fh:
            text = fh.read()
    except OSError as err:
        raise ModelFileError(f'{path}: cannot read ({err.strerror})') from None
    except UnicodeDecodeError:
        raise ModelFileError(f'{path}: not a UTF-8 text file') from None
    try:
        return loads(text)
    except ModelFileError as err:
        raise ModelFileError(f'{path}: {err}') from None


def save_atomic(sf, path):
    """Write a subject file so that ``path`` always holds either the old or the new model."""
    text = dumps(sf)
    loads(text)  # never replace a good file with one we could not read back
    write_text_atomic(path, text)
    return os.path.abspath(path)


def _file_mode(path):
    """Keep an existing file's permissions; new files get 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask():
    """Read the process umask without changing it (os.umask is not thread-safe)."""
    try:
        with open('/proc/self/status', encoding='ascii') as fh:
            for line in fh:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def save_text(path, text):
    """Write ``text`` to ``path`` atomically; return (True, absolute path) or (False, why)."""
    path = os.path.abspath(os.fspath(path))
    try:
        write_text_atomic(path, text)
    except OSError as err:
        return False, f'cannot save the model to {path}: {err}'
    return True, path


def write_text_atomic(path, text):
    """Temporary file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp',
                               dir=folder)
    try:
        os.fchmod(fd, _file_mode(path))
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
