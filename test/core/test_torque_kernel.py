"""The torque path's numba kernel against its JAX call: the same numbers, both families."""

import dataclasses

from diffmsm_ros import templates
from diffmsm_ros.live import torque_kernel
from diffmsm_ros.live.torque import BATCH, STEPS, TorquePath
from diffmsm_ros.model.muscles import CURVE_DEFAULTS
import numpy as np
import pytest

SEEDS = (0, 1, 2)


def _variant(name):
    """Return a template, or the elbow with smoothed MuJoCo activation or with De Groote curves."""
    model = templates.resolve('arm' if name == 'arm' else 'elbow').model
    mus = model.muscles
    nm = model.n_muscles
    if name == 'smooth':
        curve = dict(mus.curve, tau_smooth=np.full(nm, 0.2))
        return model.replace(muscles=dataclasses.replace(mus, curve=curve))
    if name == 'degroote':
        curve = {k: np.full(nm, v) for k, v in CURVE_DEFAULTS['degroote2016'].items()}
        curve['pennation'] = np.linspace(0.0, 0.3, nm)
        # De Groote's curves are in lengths of the fibre: slack lengths that put the
        # fibres near their optimum over the elbow's range
        return model.replace(muscles=dataclasses.replace(
            mus, family='degroote2016', curve=curve,
            tendon_slack_length=np.abs(np.asarray(mus.tendon_slack_length))))
    return model


def _packed(path, size, rng):
    """Return a random input of the call: activations, steps, samples (some off the grid), EMG."""
    layout = path._layouts[size]
    nm, nq = layout.nm, layout.nq
    packed = np.zeros(layout.length)
    packed[:nm] = rng.uniform(0.0, 1.0, nm)
    n_total = int(rng.integers(0, STEPS))
    packed[nm:nm + 2] = rng.integers(0, n_total + 1), n_total
    block = packed[layout.samples_at:layout.rows_at].reshape(size, layout.sample_width)
    for row in block:
        row[0], row[1] = rng.integers(0, n_total + 1), rng.uniform(0.0, 1.0)
        row[2:2 + nq] = rng.uniform(-1.0, 3.0, nq)       # beyond the spline grids too
        row[2 + nq:] = rng.uniform(-6.0, 6.0, nq)
    packed[layout.rows_at:] = rng.uniform(0.0, 1.2, layout.length - layout.rows_at)
    return packed


@pytest.mark.parametrize('name', ['elbow', 'arm', 'smooth', 'degroote'])
def test_kernel_equals_the_jax_call(name):
    model = _variant(name)
    path = TorquePath(model, kernel=True)
    flat, _, _, kernel = path.current
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for size in (1, BATCH):
            for _ in range(20):
                packed = _packed(path, size, rng)
                want = np.asarray(path._calls[size](flat, packed))
                got = path._kernel_call(kernel, size, packed)
                assert got is not None
                assert np.all(np.isfinite(want))
                scale = np.maximum(np.abs(want), 1e-6)
                assert np.max(np.abs(got - want) / scale) < 1e-9


def test_odd_input_goes_to_the_jax_call():
    path = TorquePath(_variant('elbow'), kernel=True)
    rng = np.random.default_rng(0)
    packed = _packed(path, 1, rng)
    packed[path._layouts[1].samples_at + 2] = np.nan        # q
    assert path._kernel_call(path.current[3], 1, packed) is None
    packed = _packed(path, 1, rng)
    packed[path.nm + 1] = STEPS + 5                           # more steps than a call holds
    assert path._kernel_call(path.current[3], 1, packed) is None


def test_torque_path_with_and_without_kernel():
    """The same stream through both forms: the same outputs, and NaN q still withheld."""
    model = _variant('arm')
    paths = [TorquePath(model, kernel=k) for k in (True, False)]
    assert paths[0].current[3] is not None and paths[1].current[3] is None
    rng = np.random.default_rng(3)
    h = model.timestep
    results = [[], []]
    for i in range(200):
        t = i * h
        e = rng.uniform(0.0, 1.0, (1, model.n_muscles))
        q = np.array([0.4 + 0.3 * np.sin(t), 0.2 * np.cos(t)])
        qd = np.array([0.3 * np.cos(t), -0.2 * np.sin(t)])
        for path, out in zip(paths, results):
            path.add_excitations([t], e)
            out.extend(path.at_many([t - 0.3 * h, t + 0.5 * h], [q, q], [qd, qd]))
    for a, b in zip(*results):
        assert a.finite and b.finite
        np.testing.assert_allclose(a.torque, b.torque, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a.force, b.force, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(a.activation, b.activation, rtol=1e-9, atol=1e-12)
    out = paths[0].at(200 * h, np.array([np.nan, 0.0]), np.zeros(2))
    assert out is not None and not out.finite


def test_available():
    assert torque_kernel.available()
