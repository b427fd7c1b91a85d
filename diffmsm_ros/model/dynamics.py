"""
Continuous-time musculoskeletal dynamics.

State: joint angles q (rad), velocities qd (rad/s), muscle activations a.  Inputs:
excitations u in [0, 1] and the exoskeleton torque on each joint (N m, same sign as q).
Equation of motion: M(q) qdd = R(q)^T F(a, l, ldot) + tau_exo - c(q, qd) - D qd.
"""

from typing import NamedTuple

from diffmsm_ros.model import geometry, muscles, skeleton
import jax
import jax.numpy as jnp


class State(NamedTuple):
    q: jax.Array
    qd: jax.Array
    a: jax.Array


class Inputs(NamedTuple):
    u: jax.Array
    tau_exo: jax.Array


class MuscleState(NamedTuple):
    """What the muscles do at one instant."""

    length: jax.Array          # m
    velocity: jax.Array        # m/s
    moment_arm: jax.Array      # [n_muscles, n_joints] m (dl/dq)
    force: jax.Array           # N, negative pulls
    fiber_velocity: jax.Array  # normalised
    torque: jax.Array          # [n_joints] N m


def muscle_lengths(model, q):
    """Muscle-tendon lengths (m) at joint angles q."""
    return geometry.muscle_lengths(model.geometry, q, model.n_muscles)


def moment_arms(model, q):
    """R = dl/dq (m/rad), [n_muscles, n_joints]."""
    return jax.jacfwd(lambda qq: muscle_lengths(model, qq))(q)


def muscle_state(model, q, qd, a):
    """Lengths, moment arms, forces and the net muscle torque (N m) on each joint."""
    length, velocity = jax.jvp(lambda qq: muscle_lengths(model, qq), (q,), (qd,))
    arm = moment_arms(model, q)
    force, fiber_velocity = muscles.forces(model.muscles, a, length, velocity)
    return MuscleState(length, velocity, arm, force, fiber_velocity, arm.T @ force)


def muscle_torque(model, q, qd, a):
    """Net muscle torque on each joint (N m)."""
    return muscle_state(model, q, qd, a).torque


def generalized_force(model, state, inputs):
    """Everything on the right-hand side of M qdd = ... (N m), damping included."""
    sk = model.skeleton
    tau = muscle_torque(model, state.q, state.qd, state.a)
    bias = skeleton.bias_forces(sk, state.q, state.qd)
    return tau + inputs.tau_exo - bias - sk.damping * state.qd


def joint_acceleration(model, state, inputs):
    """Joint accelerations (rad/s^2), damping explicit, as MuJoCo's mj_forward reports."""
    m = skeleton.mass_matrix(model.skeleton, state.q)
    return jnp.linalg.solve(m, generalized_force(model, state, inputs))


def activation_rate(model, u, a):
    """da/dt (1/s)."""
    return muscles.activation_rate(model.muscles, u, a)


def inverse_dynamics(model, q, qd, qdd):
    """Joint torque (N m) needed for qdd besides damping: M qdd + c + D qd."""
    sk = model.skeleton
    return (skeleton.mass_matrix(sk, q) @ qdd + skeleton.bias_forces(sk, q, qd)
            + sk.damping * qd)
