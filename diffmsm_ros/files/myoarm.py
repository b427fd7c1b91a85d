"""
The reduced MyoArm: shoulder elevation and elbow flexion, eight muscles, two exo motors.

Built from MyoSuite's right arm (``myo_sim``, model ``myoarm_r``) with ``mujoco.MjSpec``
(needs ``mujoco`` and ``myo-sim``), so that MuJoCo simulates exactly the arm that
``import_mjcf`` turns into a subject model:

* the equality constraints (the scapulohumeral rhythm and the elevation-plane coupling) and
  the contact pairs are removed and contacts disabled: the shoulder girdle is rigid;
* every joint but the two kept ones is removed and its locked angle built into the body
  pose (a locked joint after a kept one in the same body is moved in front of it and the
  kept joint's axis and anchor are conjugated, which is exact);
* only the chosen muscles and the tendons they use are kept;
* the phantom bodies' 1 kg m^2 placeholder inertias become ``PHANTOM_INERTIA`` (they would
  otherwise add 1 kg m^2 to the shoulder);
* the shoulder range is limited to the exoskeleton's working range ``SHOULDER_RANGE``;
* a ``motor`` on each kept joint is the exoskeleton.

``python -m diffmsm_ros.files.myoarm --out arm.yaml`` writes the subject-model template
(the bundled ``arm`` template was made this way).
"""

import argparse
import os
import tempfile
import warnings

import numpy as np

JOINTS = ('shoulder_elv_r', 'elbow_flexion_r')
MUSCLES = ('DELT1', 'TMAJ', 'PECM3', 'BIClong', 'BICshort', 'TRIlong', 'TRIlat', 'BRA')
PLANE = np.pi / 2          # elv_angle_r (rad): 0 = frontal plane, pi/2 = sagittal plane
LOCKED = {'elv_angle_r': PLANE, 'shoulder1_r2_r': -PLANE,   # the model couples them so
          'shoulder_rot_r': 0.0, 'pro_sup_r': 0.0,          # forearm neutral
          'deviation_r': 0.0, 'flexion_r': 0.0}             # every other joint: 0 rad
MOTORS = {'shoulder_elv_r': ('exo_shoulder', 40.0), 'elbow_flexion_r': ('exo_elbow', 20.0)}
SHOULDER_RANGE = (0.0, 2.0)     # rad of elevation the exoskeleton moves through
PHANTOM_INERTIA = 1e-4          # kg m^2
NAME = 'myoarm-2dof-8muscles-exo'
STEP_2D = 0.05                  # rad, grid step of the muscles spanning both joints


def _rotation(quat):
    import mujoco
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, np.asarray(quat, dtype=float))
    return rot.reshape(3, 3)


def _quaternion(rot):
    import mujoco
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot, dtype=float).reshape(9))
    return quat


def _hinge_transform(axis, pos, angle):
    """Rotation and translation of a hinge turned by ``angle`` about the line (pos, axis)."""
    import mujoco
    axis = np.asarray(axis, dtype=float)
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, axis / np.linalg.norm(axis), float(angle))
    rot = _rotation(quat)
    pos = np.asarray(pos, dtype=float)
    return rot, pos - rot @ pos


def _lock_joints(spec, compiled, kept, locked):
    """Remove every joint not in ``kept``, building its angle into its body's pose."""
    import mujoco
    for body in spec.bodies:
        joints = list(body.joints)
        if not joints or all(j.name in kept for j in joints):
            continue
        for j in joints:
            if j.type != mujoco.mjtJoint.mjJNT_HINGE:
                raise ValueError(f'{j.name}: only hinge joints can be locked')
            if compiled.qpos0[compiled.jnt_qposadr[compiled.joint(j.name).id]] != 0:
                raise ValueError(f'{j.name}: a nonzero reference angle is not handled')
        bid = compiled.body(body.name).id
        rot, trans = np.eye(3), np.zeros(3)
        before = []                      # kept joints met so far in this body
        for j in joints:
            if j.name in kept:
                before.append(j)
                continue
            r, t = _hinge_transform(j.axis, j.pos, locked.get(j.name, 0.0))
            for k in before:             # K T = T (T^-1 K T): conjugate K by T
                k.axis = r.T @ np.asarray(k.axis, dtype=float)
                k.pos = r.T @ (np.asarray(k.pos, dtype=float) - t)
            trans, rot = trans + rot @ t, rot @ r
            spec.delete(j)
        body_rot = _rotation(compiled.body_quat[bid])
        body.pos = compiled.body_pos[bid] + body_rot @ trans
        body.alt.type = mujoco.mjtOrientation.mjORIENTATION_QUAT
        body.quat = _quaternion(body_rot @ rot)


def reduced_arm_spec(muscles=MUSCLES):
    """Return the MjSpec of the reduced arm (see the module docstring)."""
    import mujoco
    import myo_sim
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        spec = myo_sim.load_spec('myoarm_r')
        compiled = spec.compile()
    for item in list(spec.equalities) + list(spec.pairs):
        spec.delete(item)
    for actuator in list(spec.actuators):
        if actuator.name not in muscles:
            spec.delete(actuator)
    used = {a.target for a in spec.actuators}
    for tendon in list(spec.tendons):
        if tendon.name not in used:
            spec.delete(tendon)
    _lock_joints(spec, compiled, set(JOINTS), LOCKED)
    for body in spec.bodies:
        if 'phant' in body.name:
            body.inertia = [PHANTOM_INERTIA] * 3
    for joint in spec.joints:
        if joint.name == JOINTS[0]:
            joint.range = list(SHOULDER_RANGE)
    spec.option.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
    for joint, (name, gear) in MOTORS.items():
        spec.add_actuator(name=name, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                          gaintype=mujoco.mjtGain.mjGAIN_FIXED,
                          biastype=mujoco.mjtBias.mjBIAS_NONE, gear=[gear, 0, 0, 0, 0, 0])
    spec.modelname = NAME
    return spec


def write_reduced_arm(path, muscles=MUSCLES):
    """Write the reduced arm's MJCF to ``path`` (meshes refer to the installed myo-sim)."""
    spec = reduced_arm_spec(muscles)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')     # myo-sim attaches specs without a prefix
        spec.compile()
        text = spec.to_xml()
    with open(path, 'w') as f:
        f.write(text)
    return path


def import_arm(xml_path=None):
    """Return the subject-model document of the reduced arm (``import_mjcf`` of its MJCF)."""
    from diffmsm_ros.files import mjcf
    options = mjcf.ImportOptions(joints=JOINTS, muscles=MUSCLES, step_2d=STEP_2D, name=NAME)
    if xml_path is not None:
        return mjcf.import_mjcf(xml_path, options)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_reduced_arm(os.path.join(tmp, NAME + '.xml'))
        doc = mjcf.import_mjcf(path, options)
    doc['source'] = {'mjcf': 'myo_sim:myoarm_r reduced by diffmsm_ros.files.myoarm',
                     'locked': {k: float(v) for k, v in LOCKED.items()},
                     'shoulder_range': list(SHOULDER_RANGE),
                     'phantom_inertia': PHANTOM_INERTIA}
    return doc


def main(argv=None):
    """Write the arm template (``--out``) and optionally the reduced MJCF (``--xml``)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='subject-model YAML to write')
    parser.add_argument('--xml', help='also write the reduced MJCF here')
    args = parser.parse_args(argv)
    from diffmsm_ros.files import modelfile
    if args.xml:
        write_reduced_arm(args.xml)
    doc = import_arm()
    modelfile.write_text_atomic(args.out, modelfile.dumps(modelfile.from_doc(doc)))
    print(args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
