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
    def twice(qq):
        length = muscle_lengths(model, qq)
        return length, length

    arm, length = jax.jacfwd(twice, has_aux=True)(q)
    velocity = arm @ qd
    force, fiber_velocity = muscles.forces(model.muscles, a, length, velocity)
    return MuscleState(length, velocity, arm, force, fiber_velocity, arm.T @ force)


def muscle_torque(model, q, qd, a):
    """Net muscle torque on each joint (N m)."""
    return muscle_state(model, q, qd, a).torque


def motion_terms(model, state, inputs, h=0.0):
    """
    M(q) + h D (kg m^2) and everything on the right-hand side of M qdd = ... (N m).

    ``h`` > 0 (s) gives the matrix of a step with implicit damping.
    """
    sk = model.skeleton
    mass, bias = skeleton.mass_and_bias(sk, state.q, state.qd)
    tau = muscle_torque(model, state.q, state.qd, state.a)
    force = tau + inputs.tau_exo - bias - sk.damping * state.qd
    return mass + h * jnp.diag(sk.damping), force


def joint_acceleration(model, state, inputs):
    """Joint accelerations (rad/s^2), damping explicit, as MuJoCo's mj_forward reports."""
    return jnp.linalg.solve(*motion_terms(model, state, inputs))


def activation_rate(model, u, a):
    """da/dt (1/s)."""
    return muscles.activation_rate(model.muscles, u, a)


def inverse_dynamics(model, q, qd, qdd):
    """Joint torque (N m) needed for qdd besides damping: M qdd + c + D qd."""
    mass, bias = skeleton.mass_and_bias(model.skeleton, q, qd)
    return mass @ qdd + bias + model.skeleton.damping * qd
