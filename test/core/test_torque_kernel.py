"""The torque path's numba kernels against their JAX and numpy forms: the same numbers."""

import dataclasses

from diffmsm_ros import templates
from diffmsm_ros.live import grid_kernel, torque_kernel
from diffmsm_ros.live.torque import AHEAD, BATCH, RING, SLOPE_ROWS, STEPS, TorquePath
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


@pytest.mark.parametrize('seed', SEEDS)
def test_resample_kernel_writes_the_rows_numpy_writes(seed):
    """Chunks of 1-15 samples at jittered times (some on the grid, some far apart)."""
    model = _variant('elbow')
    paths = [TorquePath(model, kernel=k) for k in (True, False)]
    rng = np.random.default_rng(seed)
    h, nm = model.timestep, model.n_muscles
    t = 10.0 + 0.37 * h
    for chunk in range(300):
        n = int(rng.integers(1, 16))
        step = h * rng.choice([0.5, 1.0, 1.0, 2.0, 7.3])
        times = t + step * np.arange(1, n + 1) + rng.uniform(-0.2, 0.2, n) * step
        if rng.uniform() < 0.2:
            # on the grid within rounding (ON_GRID decides which row a sample is on)
            times = np.round(times / h) * h + rng.uniform(-1e-7, 1e-7, n) * h
        times = np.maximum.accumulate(times) + 1e-9 * np.arange(n)
        e = rng.uniform(0.0, 1.0, (n, nm))
        for path in paths:
            path.add_excitations(times, e)
        t = times[-1]
        assert paths[0].final == paths[1].final
        np.testing.assert_allclose(paths[0].rows, paths[1].rows, rtol=1e-12, atol=1e-14)
    assert paths[0].final - paths[0].first > RING      # the ring wrapped


@pytest.mark.parametrize('seed', SEEDS)
def test_fill_rows_kernel_copies_the_rows_numpy_copies(seed):
    """Windows before, across and after the first and the newest rows, across the wrap."""
    model = _variant('elbow')
    path = TorquePath(model, kernel=False)
    rng = np.random.default_rng(seed)
    h, nm, count = model.timestep, model.n_muscles, path.history + STEPS
    for case in range(200):
        path.rows = rng.uniform(0.0, 1.0, (RING, nm))
        path.first = int(rng.integers(-50, 5000))
        path.final = path.first + int(rng.integers(0, 400))
        path.last_e = rng.uniform(0.0, 1.0, nm)
        path.last_t = (path.final + rng.uniform(0.0, 1.0)) * h
        kc = path.first + int(rng.integers(-count, path.final - path.first + count))
        want, got = np.zeros((count, nm)), np.zeros((count, nm))
        path._fill_rows(kc, want)
        grid_kernel.fill_rows(path.rows, kc - path.history, path.first, path.final,
                              path.last_e, path.last_t, h, SLOPE_ROWS, AHEAD, got)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_grid_kernels_run_after_compile_without_compiling_again():
    """``compile`` compiles the grid kernels for the types the torque path passes them."""
    path = TorquePath(_variant('elbow'))
    path.compile()
    signatures = {f: len(f.signatures) for f in (grid_kernel.resample, grid_kernel.fill_rows)}
    path.add_excitations(np.arange(1, 4) * 0.001, np.full((3, path.nm), 0.2))
    path.add_excitations([0.0045], np.full((1, path.nm), 0.3))
    path.at_many([0.004, 0.005], [np.zeros(1)] * 2, [np.zeros(1)] * 2)
    assert {f: len(f.signatures) for f in signatures} == signatures
