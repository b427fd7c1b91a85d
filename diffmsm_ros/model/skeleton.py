"""
Serial chain of revolute joints with arbitrary axes: kinematics, mass matrix, bias forces.

Joint j turns segment j and every segment after it.  Geometry is given at the zero
configuration (q = 0) in the world frame, product-of-exponentials style: joint axes and
anchor points, and for each segment the pose of its own frame so that its centre of mass
(m) and inertia tensor (kg m^2, about the centre of mass) are written in that local frame,
as in an MJCF body.  Gravity (m/s^2) acts in the world frame.
"""

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """Inertial and joint parameters of the chain; arrays have one row per joint/segment."""

    joint_axis: jax.Array    # [n, 3] joint axes in the segment frame (normalised here)
    joint_pos: jax.Array     # [n, 3] joint positions (m) in the segment frame
    frame_pos: jax.Array     # [n, 3] segment frame origins (m), world frame at q = 0
    frame_quat: jax.Array    # [n, 4] segment frame orientations (w, x, y, z) at q = 0
    mass: jax.Array          # [n] kg
    com: jax.Array           # [n, 3] m, segment frame
    inertia: jax.Array       # [n, 6] kg m^2 about the com: xx yy zz xy xz yz, segment frame
    damping: jax.Array       # [n] N m s/rad
    armature: jax.Array      # [n] kg m^2
    gravity: jax.Array       # [3] m/s^2
    joint_range: jax.Array   # [n, 2] rad, the joint limits (informative; not enforced)
    joint_names: tuple = ()
    segment_names: tuple = ()


jax.tree_util.register_dataclass(
    Skeleton,
    data_fields=['joint_axis', 'joint_pos', 'frame_pos', 'frame_quat', 'mass', 'com', 'inertia',
                 'damping', 'armature', 'gravity', 'joint_range'],
    meta_fields=['joint_names', 'segment_names'])


def inertia_matrix(six):
    """3x3 symmetric tensor from (xx, yy, zz, xy, xz, yz)."""
    xx, yy, zz, xy, xz, yz = (six[..., k] for k in range(6))
    return jnp.stack([
        jnp.stack([xx, xy, xz], -1),
        jnp.stack([xy, yy, yz], -1),
        jnp.stack([xz, yz, zz], -1)], -2)


def axis_rotation(axis, angle):
    """Rotation matrix about a unit axis (Rodrigues)."""
    x, y, z = axis[0], axis[1], axis[2]
    zero = jnp.zeros_like(angle)
    k = jnp.stack([jnp.stack([zero, -z, y]), jnp.stack([z, zero, -x]),
                   jnp.stack([-y, x, zero])])
    s, c = jnp.sin(angle), jnp.cos(angle)
    return jnp.eye(3, dtype=k.dtype) + s * k + (1.0 - c) * (k @ k)


def quat_rotation(quat):
    """Rotation matrices [..., 3, 3] from quaternions (w, x, y, z), normalised here."""
    quat = quat / jnp.linalg.norm(quat, axis=-1, keepdims=True)
    w, x, y, z = (quat[..., k] for k in range(4))
    return jnp.stack([
        jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)],
        -2)


def zero_config_joints(sk):
    """Return unit joint axes and anchors (m) in the world frame at q = 0, [n, 3] each."""
    rot = quat_rotation(sk.frame_quat)
    axis = sk.joint_axis / jnp.linalg.norm(sk.joint_axis, axis=-1, keepdims=True)
    return (jnp.einsum('nij,nj->ni', rot, axis),
            sk.frame_pos + jnp.einsum('nij,nj->ni', rot, sk.joint_pos))


def _zero_config_bodies(sk):
    """Centres of mass (world) and inertia tensors (world axes) at q = 0."""
    rot = quat_rotation(sk.frame_quat)
    com0 = sk.frame_pos + jnp.einsum('nij,nj->ni', rot, sk.com)
    inertia0 = jnp.einsum('nij,njk,nlk->nil', rot, inertia_matrix(sk.inertia), rot)
    return com0, inertia0


def forward_kinematics(sk, q):
    """
    Per joint: current world axis and anchor; per segment: rotation and translation.

    The pose of segment i maps a q = 0 world point p to rot[i] @ p + trans[i].
    """
    n = q.shape[0]
    axis0, anchor0 = zero_config_joints(sk)
    rot = jnp.eye(3, dtype=q.dtype)
    trans = jnp.zeros(3, dtype=q.dtype)
    axes, anchors, rots, transes = [], [], [], []
    for j in range(n):
        axes.append(rot @ axis0[j])
        anchors.append(rot @ anchor0[j] + trans)
        r_j = axis_rotation(axis0[j], q[j])
        t_j = anchor0[j] - r_j @ anchor0[j]
        trans = rot @ t_j + trans
        rot = rot @ r_j
        rots.append(rot)
        transes.append(trans)
    return jnp.stack(axes), jnp.stack(anchors), jnp.stack(rots), jnp.stack(transes)


def _jacobians(sk, q):
    """Linear (at the com) and angular Jacobians of every segment, [n, 3, n] each."""
    n = q.shape[0]
    axes, anchors, rots, transes = forward_kinematics(sk, q)
    com0, inertia0 = _zero_config_bodies(sk)
    com = jnp.einsum('nij,nj->ni', rots, com0) + transes
    mask = (jnp.arange(n)[None, :] <= jnp.arange(n)[:, None]).astype(q.dtype)  # [seg, joint]
    lever = com[:, None, :] - anchors[None, :, :]                             # [seg, joint, 3]
    jv = jnp.cross(jnp.broadcast_to(axes[None], lever.shape), lever) * mask[..., None]
    jw = jnp.broadcast_to(axes[None], lever.shape) * mask[..., None]
    inertia = jnp.einsum('nij,njk,nlk->nil', rots, inertia0, rots)
    return jnp.swapaxes(jv, 1, 2), jnp.swapaxes(jw, 1, 2), com, inertia


def _mass_from(sk, jv, jw, inertia):
    m = (jnp.einsum('s,sij,sik->jk', sk.mass, jv, jv)
         + jnp.einsum('sij,sil,slk->jk', jw, inertia, jw))
    return m + jnp.diag(sk.armature)


def mass_matrix(sk, q):
    """Joint-space inertia matrix M(q) (kg m^2), armature included."""
    jv, jw, _, inertia = _jacobians(sk, q)
    return _mass_from(sk, jv, jw, inertia)


def mass_and_bias(sk, q, qd):
    """
    M(q) (kg m^2) and c(q, qd) (N m) from one kinematics pass.

    c is such that M qdd + c = applied joint torques: gravity, Coriolis and centrifugal.
    """
    def twists(qq):
        jv, jw, _, inertia = _jacobians(sk, qq)
        return (jv @ qd, jw @ qd), (jv, jw, inertia)

    (_, w), (dv, dw), (jv, jw, inertia) = jax.jvp(twists, (q,), (qd,), has_aux=True)
    lin = sk.mass[:, None] * (dv - sk.gravity[None, :])
    iw = jnp.einsum('sij,sj->si', inertia, w)
    ang = jnp.einsum('sij,sj->si', inertia, dw) + jnp.cross(w, iw)
    bias = jnp.einsum('sij,si->j', jv, lin) + jnp.einsum('sij,si->j', jw, ang)
    return _mass_from(sk, jv, jw, inertia), bias


def bias_forces(sk, q, qd):
    """Return c(q, qd) with M qdd + c = applied joint torques (N m): gravity, Coriolis."""
    return mass_and_bias(sk, q, qd)[1]


def gravity_torque(sk, q):
    """Joint torques (N m) that gravity alone applies (the negative of c at rest)."""
    return -bias_forces(sk, q, jnp.zeros_like(q))
