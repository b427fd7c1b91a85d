"""Muscle curves and activation dynamics against MuJoCo's own functions."""

from diffmsm_ros.model import activation, curves_mujoco
import mujoco
import numpy as np
import pytest

N = 4000


def _random_muscles(rng):
    r0 = rng.uniform(0.3, 0.9, N)
    r1 = r0 + rng.uniform(0.2, 1.0, N)
    force = rng.uniform(50, 2000, N)
    lmin = rng.uniform(0.2, 0.7, N)
    lmax = rng.uniform(1.2, 3.0, N)
    vmax = rng.uniform(2, 20, N)
    fpmax = rng.uniform(0.3, 2.0, N)
    fvmax = rng.uniform(1.05, 1.8, N)
    lr0 = rng.uniform(0.05, 0.4, N)
    lr = np.stack([lr0, lr0 + rng.uniform(0.02, 0.2, N)], -1)
    return r0, r1, force, lmin, lmax, vmax, fpmax, fvmax, lr


def _relative_error(ours, theirs):
    scale = np.maximum(np.abs(theirs), 1e-300)
    return np.where(theirs == 0, np.abs(ours), np.abs(ours - theirs) / scale)


def test_gain_and_bias_equal_mujoco_on_every_branch():
    rng = np.random.default_rng(1)
    r0, r1, force, lmin, lmax, vmax, fpmax, fvmax, lr = _random_muscles(rng)
    l0 = (lr[:, 1] - lr[:, 0]) / (r1 - r0)
    # normalised lengths from below lmin to beyond lmax, velocities from below -1 to above y
    big_l = rng.uniform(lmin - 0.2, lmax + 0.5)
    length = lr[:, 0] + (big_l - r0) * l0
    big_v = rng.uniform(-1.5, fvmax - 1 + 0.5)
    velocity = big_v * l0 * vmax
    ours_gain = np.asarray(curves_mujoco.muscle_gain(
        length, velocity, lr.T, force, (r0, r1, lmin, lmax, vmax, fvmax)))
    ours_bias = np.asarray(curves_mujoco.muscle_bias(length, lr.T, force, r0, r1, lmax, fpmax))
    gain = np.empty(N)
    bias = np.empty(N)
    for i in range(N):
        prm = np.array([r0[i], r1[i], force[i], 1.0, lmin[i], lmax[i], vmax[i], fpmax[i],
                        fvmax[i]])
        gain[i] = mujoco.mju_muscleGain(length[i], velocity[i], lr[i], 1.0, prm)
        bias[i] = mujoco.mju_muscleBias(length[i], lr[i], 1.0, prm)
    assert np.max(_relative_error(ours_gain, gain)) <= 1e-9
    assert np.max(_relative_error(ours_bias, bias)) <= 1e-9
    # every piecewise branch was exercised
    a, b = 0.5 * (lmin + 1), 0.5 * (1 + lmax)
    fl_branches = [big_l < lmin, (big_l >= lmin) & (big_l <= a), (big_l > a) & (big_l <= 1),
                   (big_l > 1) & (big_l <= b), (big_l > b) & (big_l <= lmax), big_l > lmax]
    fv_branches = [big_v <= -1, (big_v > -1) & (big_v <= 0), (big_v > 0) & (big_v <= fvmax - 1),
                   big_v > fvmax - 1]
    fp_branches = [big_l <= 1, (big_l > 1) & (big_l <= b), big_l > b]
    for branch in fl_branches + fv_branches + fp_branches:
        assert branch.sum() >= 50
    assert np.count_nonzero(gain) > N // 2 and np.count_nonzero(bias) > N // 4


@pytest.mark.parametrize('smoothing', [0.0, 0.1, 0.5])
def test_activation_dynamics_equal_mujoco(smoothing):
    rng = np.random.default_rng(2)
    u = rng.uniform(-0.3, 1.3, N)        # clamped branches included
    a = rng.uniform(-0.2, 1.2, N)
    a[:50] = u[:50]                        # u == a
    tau_act = rng.uniform(0.005, 0.03, N)
    tau_deact = rng.uniform(0.02, 0.1, N)
    ours = np.asarray(activation.mujoco_activation_rate(u, a, tau_act, tau_deact, smoothing))
    theirs = np.array([mujoco.mju_muscleDynamics(u[i], a[i], np.array(
        [tau_act[i], tau_deact[i], smoothing])) for i in range(N)])
    assert np.max(_relative_error(ours, theirs)) <= 1e-9
    assert np.sum(u > 1) > 100 and np.sum(u < 0) > 100 and np.sum(a > 1) > 100
