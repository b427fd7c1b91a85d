"""
Cheap derivatives with respect to model parameters, for least-squares Jacobians.

A Jacobian over P parameters in forward mode pushes P tangents through everything that
depends on them.  Two structures make most of that work unnecessary:

- ``model_part_derivative`` / ``model_part_jvp``: fn(model, ...) differentiated one model
  part (muscles, skeleton, ...) at a time, so that a muscle parameter's tangent never enters
  the skeleton's computations and the reverse (used for the equation error).
- ``motion_rollout``: (q, qd) stepped like ``integrators.euler_step`` (semi-implicit Euler,
  implicit damping) with the activations a[k] and exoskeleton torques (N m) given per step.
  Its result is the same; its derivative takes per step the state Jacobian
  A = d x[k+1] / d x[k] once (2 nq tangents through geometry, kinematics and the solve) and
  the step's derivative with respect to the model and inputs at the fixed state, where
  geometry and kinematics are constants.  A tangent then costs a small matrix product:
  about 2 nq full linearisations per step instead of P (used for multiple shooting).
"""

import functools

from diffmsm_ros.model.dynamics import Inputs, motion_terms, State
import jax
from jax import custom_derivatives
import jax.numpy as jnp


def motion_step(model, x, a, tau, h):
    """One step of x = (q, qd) (rad, rad/s) with activations a and exo torque tau (N m)."""
    nq = x.shape[0] // 2
    q, qd = x[:nq], x[nq:]
    qdd = jnp.linalg.solve(*motion_terms(model, State(q, qd, a), Inputs(None, tau), h))
    qd_next = qd + h * qdd
    return jnp.concatenate([q + h * qd_next, qd_next])


def _scan(model, x0, a, tau, h):
    def body(x, inputs):
        nxt = motion_step(model, x, inputs[0], inputs[1], h)
        return nxt, nxt

    return jax.lax.scan(body, x0, (a, tau))[1]


def motion_rollout(model, x0, a, tau, h):
    """
    States x = (q, qd) after each of the T steps, [T, 2 nq].

    ``x0`` [2 nq] initial angles (rad) and velocities (rad/s); ``a`` [T, nm] activation
    used in step k; ``tau`` [T, nq] exoskeleton torque (N m); ``h`` step (s).
    """
    model, x0, a, tau = jax.tree_util.tree_map(jnp.asarray, (model, x0, a, tau))
    return _motion_rollout(model, x0, a, tau, float(h))


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _motion_rollout(model, x0, a, tau, h):
    return _scan(model, x0, a, tau, h)


def _is_zero(t):
    """Whether a tangent is known to be zero (a symbolic zero, or None)."""
    return t is None or isinstance(t, custom_derivatives.SymbolicZero)


def _live_groups(model, d_model):
    """Perturbed leaves of the model (indices), grouped by the model part they belong to."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(model)
    d_leaves = treedef.flatten_up_to(d_model)
    groups = {}
    for i, ((path, _), d) in enumerate(zip(with_path, d_leaves)):
        if not _is_zero(d):
            groups.setdefault(str(path[0]), []).append(i)
    return [leaves for _, leaves in sorted(groups.items())], [v for _, v in with_path], \
        d_leaves, treedef


def model_part_jvp(fn, model, d_model, args, d_args):
    """
    Return the tangent of fn(model, *args), one model part at a time (not its value).

    Each perturbed part of the model (muscles, skeleton, ...) gets its explicit Jacobian,
    with the other parts constant, contracted with its tangents; perturbed ``args`` go
    through a jvp with the model fixed.  Zero tangents may be ``SymbolicZero`` or None.
    Pays off when many tangents ride along (a Jacobian), because a muscle parameter then
    costs nothing in the skeleton's computations and the reverse.
    """
    groups, leaves, d_leaves, treedef = _live_groups(model, d_model)
    shape = jax.eval_shape(fn, model, *args)
    tangent = jnp.zeros(shape.shape, shape.dtype)

    def replaced(indices, values):
        full = list(leaves)
        for i, v in zip(indices, values):
            full[i] = v
        return jax.tree_util.tree_unflatten(treedef, full)

    for indices in groups:
        part = jax.jacfwd(lambda values, ii=indices: fn(replaced(ii, values), *args))(
            [leaves[i] for i in indices])
        for i, block in zip(indices, part):
            tangent = tangent + jnp.tensordot(block, d_leaves[i], axes=d_leaves[i].ndim)
    moving = [k for k, d in enumerate(d_args) if not _is_zero(d)]
    if moving:
        def with_args(values):
            full = list(args)
            for k, v in zip(moving, values):
                full[k] = v
            return fn(model, *full)

        tangent = tangent + jax.jvp(with_args, ([args[k] for k in moving],),
                                    ([d_args[k] for k in moving],))[1]
    return tangent


def model_part_derivative(fn):
    """
    Give fn(model, *args) (arrays in, one array out) the derivative of ``model_part_jvp``.

    The result takes the same arguments and canonicalises them to JAX arrays.
    """
    wrapped = jax.custom_jvp(fn)

    @functools.partial(wrapped.defjvp, symbolic_zeros=True)
    def _jvp(primals, tangents):
        return fn(*primals), model_part_jvp(fn, primals[0], tangents[0], primals[1:],
                                            tangents[1:])

    @functools.wraps(fn)
    def call(model, *args):
        return wrapped(*jax.tree_util.tree_map(jnp.asarray, (model,) + args))

    return call


@functools.partial(_motion_rollout.defjvp, symbolic_zeros=True)
def _motion_rollout_jvp(h, primals, tangents):
    model, x0, a, tau = primals
    d_model, d_x0, d_a, d_tau = tangents
    d_x0 = jnp.zeros_like(x0) if _is_zero(d_x0) else d_x0

    def step(mm, x, a_k, tau_k):
        return motion_step(mm, x, a_k, tau_k, h)

    def body(carry, inputs):
        x, dx = carry
        a_k, tau_k, d_inputs = inputs
        d_a_k, d_tau_k = d_inputs.get('a'), d_inputs.get('tau')

        def at_state(xx):
            nxt = step(model, xx, a_k, tau_k)
            return nxt, nxt

        jac, nxt = jax.jacfwd(at_state, has_aux=True)(x)
        # the model and the inputs at the fixed state: x's own tangent is jac @ dx
        direct = model_part_jvp(step, model, d_model, (x, a_k, tau_k),
                                (None, d_a_k, d_tau_k))
        d_next = jac @ dx + direct
        return (nxt, d_next), (nxt, d_next)

    # only the per-step tangents that are not zero ride along in the scan
    d_steps = {k: d for k, d in (('a', d_a), ('tau', d_tau)) if not _is_zero(d)}
    _, (xs, dxs) = jax.lax.scan(body, (x0, d_x0), (a, tau, d_steps))
    return xs, dxs
