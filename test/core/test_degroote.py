"""The degroote2016 family against sympy.physics.biomechanics (published constants)."""

from diffmsm_ros.model import activation, curves_degroote
import numpy as np
import pytest
import sympy as sp
from sympy.physics import biomechanics as bm
from sympy.physics.mechanics import dynamicsymbols, Point, ReferenceFrame

X = sp.Symbol('x')
POINTS = np.linspace(0.3, 1.8, 301)


@pytest.mark.parametrize('ours, theirs, xs', [
    (curves_degroote.tendon_force_length, bm.TendonForceLengthDeGroote2016,
     np.linspace(0.98, 1.06, 101)),
    (curves_degroote.passive_force_length, bm.FiberForceLengthPassiveDeGroote2016, POINTS),
    (curves_degroote.active_force_length, bm.FiberForceLengthActiveDeGroote2016, POINTS),
    (curves_degroote.force_velocity, bm.FiberForceVelocityDeGroote2016,
     np.linspace(-1.0, 1.0, 201)),
])
def test_curves_equal_sympy(ours, theirs, xs):
    expected = sp.lambdify(X, theirs.with_defaults(X).doit(), 'numpy')(xs)
    np.testing.assert_allclose(np.asarray(ours(xs)), expected, rtol=1e-12, atol=1e-14)


def test_activation_equals_sympy():
    act = bm.FirstOrderActivationDeGroote2016.with_defaults('m')
    rhs = act.rhs()[0]
    e, a = act.excitation, act.activation
    f = sp.lambdify((e, a), rhs, 'numpy')
    rng = np.random.default_rng(3)
    u = rng.uniform(0, 1, 500)
    s = rng.uniform(0, 1, 500)
    ours = np.asarray(activation.degroote_activation_rate(u, s, 0.015, 0.060, 10.0))
    np.testing.assert_allclose(ours, f(u, s), rtol=1e-12, atol=1e-12)


def test_rigid_tendon_force_equals_sympy():
    q = dynamicsymbols('q')
    frame = ReferenceFrame('N')
    origin, insertion = Point('O'), Point('I')
    insertion.set_pos(origin, q * frame.x)
    insertion.set_vel(frame, q.diff() * frame.x)
    origin.set_vel(frame, 0)
    path = sp.physics.mechanics.LinearPathway(origin, insertion)
    act = bm.FirstOrderActivationDeGroote2016.with_defaults('m')
    f0, l_opt, l_slack, v_max, alpha, beta = 500.0, 0.1, 0.2, 1.0, 0.15, 0.1
    muscle = bm.MusculotendonDeGroote2016(
        'm', path, act, tendon_slack_length=l_slack, peak_isometric_force=f0,
        optimal_fiber_length=l_opt, maximal_fiber_velocity=v_max,
        optimal_pennation_angle=alpha, fiber_damping_coefficient=beta, with_defaults=True)
    qd = sp.Symbol('qd')
    expr = muscle.force.doit().subs(q.diff(), qd).subs(q, X)
    f = sp.lambdify((X, qd, act.activation), expr, 'numpy')
    rng = np.random.default_rng(4)
    length = rng.uniform(0.27, 0.33, 300)
    velocity = rng.uniform(-0.5, 0.5, 300)
    a = rng.uniform(0, 1, 300)
    ours, _ = curves_degroote.rigid_tendon_force(
        length, velocity, a, f0, l_opt, l_slack, v_max / l_opt, alpha, beta)
    # sympy's force is the pathway force (negative = pulling), as ours
    np.testing.assert_allclose(np.asarray(ours), f(length, velocity, a), rtol=1e-10)
