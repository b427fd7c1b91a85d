"""
What the identifier's compiled functions read: the template and the parameter space.

A ``Frame`` is a pytree whose leaves are the template's numbers and the space's references,
scales and bounds; its static part is the structure (names, selection, shooting options).
The compiled functions below take it as their first argument, so every Problem of one
structure shares them: a second template (a perturbed start, the next session of a cohort)
compiles nothing in the same process, and hits the persistent compilation cache in another.
"""

import dataclasses

from diffmsm_ros import traced
from diffmsm_ros.identify import (corrected, envelope_information, params, residuals, solvers,
                                  uncertainty)
from diffmsm_ros.model.subject import SubjectModel
import jax
import jax.numpy as jnp

SCORE_BLOCK = 1.0       # s of consecutive segments whose residuals may correlate (sandwich)
EQUATION_STRIDE = 4     # the robust start's equation error reads every 4th sample (8 ms)


def score_block(segment, h):
    """Count shooting segments (of ``segment`` samples of ``h`` s) in one score block."""
    return max(1, int(round(SCORE_BLOCK / (segment * h))))


@dataclasses.dataclass(frozen=True)
class Frame:
    """Template model, parameter space (leaves) and shooting options (static)."""

    template: SubjectModel
    space: params.ParamSpace
    shooting: residuals.ShootingConfig
    prior_std: float

    def model_at(self, z):
        """Subject model for normalised parameters z."""
        return params.apply(self.template, self.space, self.space.from_z(z))

    def data_residual(self, z, win):
        """Multiple-shooting residual (sigma_q units)."""
        return residuals.shooting_residuals(self.model_at(z), win, self.shooting)

    def data_normal_equations(self, z, win):
        """(J^T J, J^T r, 0.5 |r|^2, count, score spread) of one window's shooting residual."""
        def segments(zz, offset):
            return residuals.shooting_segments(self.model_at(zz), win, self.shooting, offset)

        nq, nm = self.template.n_joints, self.template.n_muscles
        count = residuals.nuisance_count(nq, nm, self.shooting)
        weights = residuals.nuisance_weights(nq, nm, self.shooting, z.dtype)
        block = score_block(self.shooting.segment, self.template.timestep)
        return residuals.shooting_normal_equations(segments, z, count, weights,
                                                   self.shooting.profile, block)

    def data_half_cost(self, z, win):
        """0.5 |r|^2 of one window's shooting residual."""
        r = self.data_residual(z, win)
        return 0.5 * jnp.sum(r * r)

    def residual(self, z, win, z_prior):
        """Shooting residual and prior, the least-squares objective (for Adam)."""
        prior = residuals.prior_residuals(z, z_prior, self.prior_std)
        return jnp.concatenate([self.data_residual(z, win), prior])

    def equation_residual(self, z, win, qdd):
        """Equation-error residual (N m) at every ``EQUATION_STRIDE``-th sample."""
        return residuals.equation_error_residuals(self.model_at(z), win, qdd,
                                                  stride=EQUATION_STRIDE)

    def equation_half_cost(self, z, win, qdd):
        """0.5 |r|^2 of one window's equation error."""
        r = self.equation_residual(z, win, qdd)
        return 0.5 * jnp.sum(r * r)

    def inertials(self, z):
        """Parameter values, segment masses and inertias at z."""
        skeleton = self.model_at(z).skeleton
        return self.space.from_z(z), skeleton.mass, skeleton.inertia


jax.tree_util.register_dataclass(Frame, data_fields=['template', 'space'],
                                 meta_fields=['shooting', 'prior_std'])


def make(template, space, shooting, prior_std):
    """
    Build the frame of a template (its name is left out: it changes no number).

    Its numbers are put on the device once here, not copied from numpy at every call.
    """
    return jax.device_put(Frame(template.replace(name='template'), space, shooting,
                                float(prior_std)))


# compiled once per process and frame structure (each takes the frame first), traced once
# per machine (traced.py)
normal = traced.jit(Frame.data_normal_equations, name='frame.normal')
half_cost = traced.jit(Frame.data_half_cost, name='frame.half_cost')
equation_normal = traced.jit(
    lambda frame, z, win, qdd: solvers.normal_equations(frame.equation_residual, z, win, qdd),
    name='frame.equation_normal')
equation_half_cost = traced.jit(Frame.equation_half_cost, name='frame.equation_half_cost')
adam = traced.jit(lambda frame, state, lower, upper, win, z_prior, learning_rate:
                  solvers.adam_update(frame.residual, state, lower, upper, win, z_prior,
                                      learning_rate=learning_rate), name='frame.adam')
theta_of = traced.jit(lambda space, z: space.from_z(z), name='frame.theta_of')
model_of = traced.jit(Frame.model_at, name='frame.model_of')
theta_jacobian = traced.jit(lambda space, z: jax.jacfwd(space.from_z)(z),
                            name='frame.theta_jacobian')
scale_direction = traced.jit(uncertainty.scale_direction, name='frame.scale_direction')
inertials = traced.jit(Frame.inertials, name='frame.inertials')
envelope_info = traced.jit(
    lambda frame, z, win, qdd, density: envelope_information.information(
        frame.model_at, z, win, qdd, density, stride=EQUATION_STRIDE),
    name='frame.envelope_info', static=EQUATION_STRIDE)
corrected_whitening = traced.jit(
    lambda frame, z, win, qdd, density: corrected.whitening(
        frame.model_at(z), win, qdd, density, EQUATION_STRIDE),
    name='frame.corrected_whitening', static=(EQUATION_STRIDE, corrected.FLOOR))
corrected_normal = traced.jit(
    lambda frame, z, win, qdd, scale, c: corrected.normal_equations(
        frame.model_at, z, win, qdd, scale, c, EQUATION_STRIDE),
    name='frame.corrected_normal', static=EQUATION_STRIDE)
corrected_cost = traced.jit(
    lambda frame, z, win, qdd, scale, c: corrected.objective(
        frame.model_at, z, win, qdd, scale, c, EQUATION_STRIDE),
    name='frame.corrected_cost', static=EQUATION_STRIDE)
