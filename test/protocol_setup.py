"""The Diff-MSM paper protocol's problem: a hidden subject, its session, what is identified."""

from diffmsm_ros.identify import problem, window
from diffmsm_ros.session import subjects, synth
import numpy as np

FULL = {'muscles': ['max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length'],
        'segments': ['mass', 'com', 'inertia'], 'joints': ['damping']}


def protocol_problem(template, duration=12.0):
    """Build the hidden subject (the template 10 % off), its session, and the problem."""
    truth = subjects.perturb(template, 0.1, np.random.default_rng(0))
    session = synth.simulate(truth.model, template.model, duration, 1)
    win = window.from_arrays(session.q, session.tau_exo, session.u, truth.model.timestep,
                             qd=session.qd)
    config = problem.IdentifyConfig(parameters=FULL, prior_std=10.0)
    return problem.Problem(truth, config), win
