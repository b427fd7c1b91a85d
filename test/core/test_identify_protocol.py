"""
The Diff-MSM paper protocol on our own simulator, noise-free (a few seeds per spread).

The full protocol (20 seeds per spread) is ``bench/protocol.py``; its figures are in the
issue notes.  Here a handful of seeds keeps the suite short while still failing if
the identifier regresses.
"""

from diffmsm_ros.identify import protocol
import numpy as np
from protocol_setup import protocol_problem
import pytest

SEEDS = {0.1: range(2), 0.3: range(2)}


@pytest.fixture(scope='module')
def setup(elbow):
    return protocol_problem(elbow)


@pytest.mark.slow
@pytest.mark.parametrize('spread, bar', [(0.1, 0.01), (0.3, 0.05)])
def test_paper_protocol(setup, spread, bar):
    prob, win = setup
    trials = protocol.run(prob, win, spread, SEEDS[spread])
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
    trial = trials[0]
    assert trial.start_mape > 20.0
    assert trial.muscle_mape <= 0.05
    assert trial.inertia_error <= 0.1
    assert trial.gravity_error <= 0.2
