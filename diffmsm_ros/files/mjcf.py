"""
Import a subject model from a MuJoCo / MyoSuite MJCF file (needs the ``mujoco`` package).

Muscle actuators become muscles with all their parameters; their lengths are sampled with
MuJoCo itself (``actuator_length`` and ``actuator_moment``) on a grid over the kept joints
and turned into Hermite spline tables; bodies moved by a kept joint are merged into that
joint's segment; the motors on kept joints are recognised as the exoskeleton.  Joints that are
not kept are locked at given angles (default: their reference angle).
"""

import dataclasses
import itertools
import math
import os

import numpy as np


@dataclasses.dataclass
class ImportOptions:
    """What to take from the MJCF file."""

    joints: tuple = ()          # joints to keep (default: every hinge that a muscle spans)
    locked: dict = dataclasses.field(default_factory=dict)   # joint name -> angle (rad)
    muscles: tuple = ()         # muscles to keep (default: all muscle actuators)
    step_1d: float = 0.02       # grid step (rad) for muscles spanning one joint
    step_2d: float = 0.05       # grid step (rad) for muscles spanning two joints
    margin: float = 0.1         # grid extends this far (rad) beyond each joint range
    name: str = ''


def _source_label(path):
    """``myo_sim:relative`` for files of the myo-sim package, else the absolute path."""
    path = os.path.abspath(os.fspath(path))
    try:
        import myo_sim
        root = os.path.dirname(os.path.abspath(myo_sim.__file__))
        if path.startswith(root + os.sep):
            return 'myo_sim:' + os.path.relpath(path, root)
    except ImportError:
        pass
    return path


def _load(path):
    import mujoco
    return mujoco, mujoco.MjModel.from_xml_path(os.fspath(path))


def _name(mujoco, m, kind, i):
    return mujoco.mj_id2name(m, kind, i)


def _dense_moment(mujoco, m, d):
    dense = np.zeros((m.nu, m.nv))
    mujoco.mju_sparse2dense(dense, d.actuator_moment, d.moment_rownnz, d.moment_rowadr,
                            d.moment_colind)
    return dense


class _Sampler:
    """Actuator lengths and moments at a configuration of the kept joints."""

    def __init__(self, mujoco, m, kept_joints, locked):
        self.mujoco, self.m = mujoco, m
        self.d = mujoco.MjData(m)
        self.qpos_base = m.qpos0.copy()
        for jid, angle in locked.items():
            self.qpos_base[m.jnt_qposadr[jid]] = angle
        self.adr = [m.jnt_qposadr[j] for j in kept_joints]
        self.dof = [m.jnt_dofadr[j] for j in kept_joints]

    def configure(self, q):
        self.d.qpos[:] = self.qpos_base
        for a, v in zip(self.adr, q):
            self.d.qpos[a] = v
        self.mujoco.mj_fwdPosition(self.m, self.d)

    def sample(self, q, actuators):
        self.configure(q)
        moment = _dense_moment(self.mujoco, self.m, self.d)[np.ix_(actuators, self.dof)]
        return self.d.actuator_length[actuators].copy(), moment


def _kept_joints(mujoco, m, options, muscle_ids):
    jt = mujoco.mjtJoint
    if options.joints:
        ids = []
        for name in options.joints:
            jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise ValueError(f'joint {name!r} is not in the MJCF model')
            if m.jnt_type[jid] != jt.mjJNT_HINGE:
                raise ValueError(f'joint {name!r} is not a hinge; only revolute joints are kept')
            ids.append(jid)
        return ids
    d = mujoco.MjData(m)
    mujoco.mj_fwdPosition(m, d)
    moment = _dense_moment(mujoco, m, d)[muscle_ids]
    ids = []
    for jid in range(m.njnt):
        if m.jnt_type[jid] == jt.mjJNT_HINGE and np.any(moment[:, m.jnt_dofadr[jid]] != 0):
            ids.append(jid)
    return ids


def _check_chain(mujoco, m, joints):
    """Order kept joints root to tip; they must form a serial chain, one per body."""
    bodies = [m.jnt_bodyid[j] for j in joints]
    if len(set(bodies)) != len(bodies):
        raise ValueError('two kept joints share a body; keep one and lock the other')
    order = sorted(range(len(joints)), key=lambda i: _depth(m, bodies[i]))
    joints = [joints[i] for i in order]
    bodies = [bodies[i] for i in order]
    for parent, child in zip(bodies, bodies[1:]):
        if not _is_ancestor(m, parent, child):
            raise ValueError('kept joints are not a serial chain: body '
                             f'{_name(mujoco, m, mujoco.mjtObj.mjOBJ_BODY, child)!r} does '
                             'not descend from the previous joint')
    for j in joints:
        if abs(m.qpos0[m.jnt_qposadr[j]]) > 0:
            raise ValueError('kept joints must have ref = 0')
    return joints, bodies


def _depth(m, body):
    depth = 0
    while body != 0:
        body = m.body_parentid[body]
        depth += 1
    return depth


def _is_ancestor(m, ancestor, body):
    while body != 0:
        if body == ancestor:
            return True
        body = m.body_parentid[body]
    return ancestor == 0


def _segments(m, d, bodies, names):
    """Merge every body moved by kept joint i (and not by i+1) into segment i."""
    out = []
    for i, root in enumerate(bodies):
        nxt = bodies[i + 1] if i + 1 < len(bodies) else None
        members = [b for b in range(m.nbody) if _is_ancestor(m, root, b)
                   and not (nxt is not None and _is_ancestor(m, nxt, b))]
        mass = sum(m.body_mass[b] for b in members)
        com = sum(m.body_mass[b] * d.xipos[b] for b in members) / mass
        inertia = np.zeros((3, 3))
        for b in members:
            rot = d.ximat[b].reshape(3, 3)
            inertia += rot @ np.diag(m.body_inertia[b]) @ rot.T
            r = d.xipos[b] - com
            inertia += m.body_mass[b] * (r @ r * np.eye(3) - np.outer(r, r))
        frame_rot = d.xmat[root].reshape(3, 3)
        frame_pos = d.xpos[root].copy()
        local_com = frame_rot.T @ (com - frame_pos)
        local_i = frame_rot.T @ inertia @ frame_rot
        out.append({
            'name': names[i], 'mass': float(mass), 'com': local_com.tolist(),
            'inertia': [local_i[0, 0], local_i[1, 1], local_i[2, 2], local_i[0, 1],
                        local_i[0, 2], local_i[1, 2]],
            'frame': {'pos': frame_pos.tolist(), 'quat': _quat(frame_rot)},
            'merged_bodies': len(members)})
    return out


def _quat(rot):
    """Convert a rotation matrix to a unit quaternion (w, x, y, z)."""
    import mujoco
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).reshape(9))
    return quat.tolist()


def _curve_doc(curve):
    doc = {k: v for k, v in curve.items() if k not in ('range0', 'range1')}
    doc['range'] = [curve['range0'], curve['range1']]
    return doc


def _grid(lo, hi, step, margin):
    lo, hi = lo - margin, hi + margin
    n = int(math.ceil((hi - lo) / step)) + 1
    return lo, n


def _sample_block(sampler, actuators, spans, ranges, step, margin):
    """Spline tables [n_act, 2^d, G...] on the grid over the spanned kept joints."""
    dims = len(spans)
    starts, counts = [], []
    for j in spans:
        lo, n = _grid(ranges[j][0], ranges[j][1], step, margin)
        starts.append(lo)
        counts.append(n)
    tables = np.zeros((len(actuators), 2 ** dims) + tuple(counts))
    fd = 1e-6
    n_kept = len(ranges)
    for node in itertools.product(*[range(c) for c in counts]):
        q = np.zeros(n_kept)
        for d, j in enumerate(spans):
            q[j] = starts[d] + step * node[d]
        length, moment = sampler.sample(q, actuators)
        tables[(slice(None), 0) + node] = length
        for d, j in enumerate(spans):
            tables[(slice(None), 1 << d) + node] = moment[:, j]
        if dims == 2:
            # mixed derivative by central differences of the first moment arm
            qp, qm = q.copy(), q.copy()
            qp[spans[1]] += fd
            qm[spans[1]] -= fd
            mp = sampler.sample(qp, actuators)[1][:, spans[0]]
            mm = sampler.sample(qm, actuators)[1][:, spans[0]]
            tables[(slice(None), 3) + node] = (mp - mm) / (2 * fd)
    return {'start': starts, 'step': [step] * dims, 'tables': tables}


def import_mjcf(path, options=None):
    """Read an MJCF file and return a subject-model document (plain dict, see ``modelfile``)."""
    options = options or ImportOptions()
    mujoco, m = _load(path)
    obj = mujoco.mjtObj
    muscle_ids, exo = [], []
    for i in range(m.nu):
        name = _name(mujoco, m, obj.mjOBJ_ACTUATOR, i)
        if m.actuator_gaintype[i] == mujoco.mjtGain.mjGAIN_MUSCLE:
            if not options.muscles or name in options.muscles:
                muscle_ids.append(i)
        elif (m.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT
              and m.actuator_gaintype[i] == mujoco.mjtGain.mjGAIN_FIXED
              and m.actuator_biastype[i] == mujoco.mjtBias.mjBIAS_NONE):
            exo.append(i)
    if options.muscles:
        found = {_name(mujoco, m, obj.mjOBJ_ACTUATOR, i) for i in muscle_ids}
        missing = [n for n in options.muscles if n not in found]
        if missing:
            raise ValueError(f'muscles not in the MJCF model: {missing}')
    if not muscle_ids:
        raise ValueError('the MJCF model has no muscle actuators')
    locked_ids = {}
    for name, angle in options.locked.items():
        jid = mujoco.mj_name2id(m, obj.mjOBJ_JOINT, name)
        if jid < 0:
            raise ValueError(f'locked joint {name!r} is not in the MJCF model')
        locked_ids[jid] = float(angle)
    joints = _kept_joints(mujoco, m, options, muscle_ids)
    joints, bodies = _check_chain(mujoco, m, joints)
    joint_names = [_name(mujoco, m, obj.mjOBJ_JOINT, j) for j in joints]
    body_names = [_name(mujoco, m, obj.mjOBJ_BODY, b) for b in bodies]
    sampler = _Sampler(mujoco, m, joints, locked_ids)
    sampler.configure(np.zeros(len(joints)))
    d = sampler.d
    ranges = [m.jnt_range[j].tolist() if m.jnt_limited[j] else [-math.pi, math.pi]
              for j in joints]
    joint_docs = {}
    for i, j in enumerate(joints):
        dof = m.jnt_dofadr[j]
        rot = d.xmat[bodies[i]].reshape(3, 3)
        joint_docs[joint_names[i]] = {
            'segment': body_names[i],
            'damping': float(m.dof_damping[dof]), 'armature': float(m.dof_armature[dof]),
            'range': [float(v) for v in ranges[i]],
            'axis': (rot.T @ d.xaxis[j]).tolist(),
            'pos': (rot.T @ (d.xanchor[j] - d.xpos[bodies[i]])).tolist()}
    segments = _segments(m, d, bodies, body_names)

    # which kept joints each muscle spans, from the moment arms over the whole grid
    span_sets = {}
    probe = [np.linspace(r[0], r[1], 7) for r in ranges]
    for i in muscle_ids:
        spanned = set()
        for q in itertools.product(*probe):
            _, moment = sampler.sample(np.array(q), [i])
            spanned |= {k for k in range(len(joints)) if abs(moment[0, k]) > 1e-9}
        if not spanned:
            raise ValueError(f'muscle {_name(mujoco, m, obj.mjOBJ_ACTUATOR, i)!r} spans none '
                             'of the kept joints')
        if len(spanned) > 2:
            raise ValueError('muscles spanning more than two kept joints are not supported')
        span_sets.setdefault(tuple(sorted(spanned)), []).append(i)

    muscle_names = [_name(mujoco, m, obj.mjOBJ_ACTUATOR, i) for i in muscle_ids]
    geometry = {}
    for spans, acts in span_sets.items():
        step = options.step_1d if len(spans) == 1 else options.step_2d
        block = _sample_block(sampler, acts, spans, ranges, step, options.margin)
        for k, i in enumerate(acts):
            tables = block['tables'][k]
            entry = {'joints': [joint_names[j] for j in spans], 'start': block['start'],
                     'step': block['step'], 'length': tables[0].tolist(),
                     'moment': [tables[1 << d].tolist() for d in range(len(spans))]}
            if len(spans) == 2:
                entry['cross'] = tables[3].tolist()
            geometry[i] = entry
    muscles = {}
    for i, name in zip(muscle_ids, muscle_names):
        g = m.actuator_gainprm[i]
        force = g[2] if g[2] > 0 else g[3] / max(1e-15, m.actuator_acc0[i])
        lr = m.actuator_lengthrange[i]
        l0 = (lr[1] - lr[0]) / (g[1] - g[0])
        curve = {}
        curve.update(range0=float(g[0]), range1=float(g[1]), lmin=float(g[4]),
                     lmax=float(g[5]), vmax=float(g[6]), fpmax=float(g[7]),
                     fvmax=float(g[8]), tau_smooth=float(m.actuator_dynprm[i][2]))
        muscles[name] = {
            'max_isometric_force': float(force), 'optimal_fiber_length': float(l0),
            'tendon_slack_length': float(lr[0] - g[0] * l0),
            'tau_act': float(m.actuator_dynprm[i][0]),
            'tau_deact': float(m.actuator_dynprm[i][1]),
            'emg_gain': 1.0, 'emg_delay': 0.0, **_curve_doc(curve),
            'geometry': geometry[i]}
    motors = [{'actuator': _name(mujoco, m, obj.mjOBJ_ACTUATOR, i),
               'joint': joint_names[joints.index(m.actuator_trnid[i][0])],
               'gear': float(m.actuator_gear[i][0])}
              for i in exo if m.actuator_trnid[i][0] in joints]
    # one motor: a mapping (as in single-joint files); several: a list, one per joint
    exo_doc = (motors[0] if len(motors) == 1 else motors) if motors else None
    return {
        'format': 'diffmsm.subject/1',
        'name': options.name or os.path.splitext(os.path.basename(os.fspath(path)))[0],
        'curves': 'mujoco',
        'timestep': float(m.opt.timestep),
        'gravity': m.opt.gravity.tolist(),
        'joints': joint_docs,
        'segments': {s['name']: s for s in segments},
        'muscles': muscles,
        'exoskeleton': exo_doc,
        'source': {'mjcf': _source_label(path),
                   'locked': {_name(mujoco, m, obj.mjOBJ_JOINT, j): a
                              for j, a in locked_ids.items()}},
    }
