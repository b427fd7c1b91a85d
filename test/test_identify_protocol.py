"""
The Diff-MSM paper protocol on our own simulator, noise-free (a few seeds per spread).

The full protocol (20 seeds per spread) is ``bench/protocol.py``; its figures are in the
issue notes.  Here a handful of seeds keeps the suite short while still failing if
the identifier regresses.
"""

from diffmsm_ros.identify import problem, protocol, window
from diffmsm_ros.session import subjects, synth
import numpy as np
import pytest

SEEDS = {0.1: range(2), 0.3: range(2)}
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


@pytest.fixture(scope='module')
def setup(elbow):
    return protocol_problem(elbow)


def report(spread, trials):
    """Print one row per trial and the mean."""
    print(f'\nspread {spread:.0%}: seed, start MAPE, muscle MAPE, worst muscle parameter, '
          'M(q) error, gravity error, seconds')
    for t in trials:
        print(f'  {t.seed:2d} {t.start_mape:6.2f}% {t.muscle_mape:.2e}% {t.muscle_max:.2e}% '
              f'{t.inertia_error:.1e}% {t.gravity_error:.1e}% {t.seconds:5.1f}')
    print(f'  mean muscle MAPE {np.mean([t.muscle_mape for t in trials]):.2e}%')


@pytest.mark.slow
@pytest.mark.parametrize('spread, bar', [(0.1, 0.01), (0.3, 0.05)])
def test_paper_protocol(setup, spread, bar):
    prob, win = setup
    trials = protocol.run(prob, win, spread, SEEDS[spread])
    report(spread, trials)
    assert np.mean([t.start_mape for t in trials]) > 100 * spread / 2   # a real spread
    assert np.mean([t.muscle_mape for t in trials]) <= bar
    # bones, as the combinations motion determines
    assert max(t.inertia_error for t in trials) <= 0.1
    assert max(t.gravity_error for t in trials) <= 0.1


@pytest.mark.slow
def test_paper_protocol_seed_in_the_passive_force_valley(setup):
    """
    Seed 13 at 30 %: its guess's gravity moment is about 110 % off.

    Every robust start's fit ends in a valley (muscles about 9 % off, gravity moment 51 %
    off) whose residual is small; the starts aimed at the bones and the first-moment kick
    of ``Problem.solve`` must still reach the truth's basin.
    """
    prob, win = setup
    trials = protocol.run(prob, win, 0.3, [13])
    report(0.3, trials)
    trial = trials[0]
    assert trial.start_mape > 20.0
    assert trial.muscle_mape <= 0.05
    assert trial.inertia_error <= 0.1
    assert trial.gravity_error <= 0.2
