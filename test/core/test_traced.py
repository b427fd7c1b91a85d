"""traced.jit: programs traced once, kept on disk, read back without tracing; never wrong."""

import glob
import os

from diffmsm_ros import traced
import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('DIFFMSM_JAX_CACHE', str(tmp_path))
    return tmp_path / 'traced'


def counted(scale):
    """Return a function that counts how often its Python body runs (once per trace)."""
    calls = []

    def fn(x, pair, k):
        calls.append(1)
        return {'sum': jnp.sum(x * pair[0]) * k, 'rows': x @ pair[1] + scale}

    return fn, calls


def arguments(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), (rng.normal(size=3), rng.normal(size=(3, 2))), 0.5


def test_a_second_process_reads_the_program_and_does_not_trace(cache):
    fn, calls = counted(1.0)
    first = traced.jit(fn, name='test.counted', static=1.0)
    args = arguments(4, 0)
    expected = jax.jit(fn)(*args)
    calls.clear()
    got = first(*args)
    assert calls == [1] and len(glob.glob(str(cache / '*'))) == 1
    # a fresh wrapper stands for another process: it reads the file, and runs no Python
    again = traced.jit(fn, name='test.counted', static=1.0)
    for seed in range(3):
        args = arguments(4, seed)
        out = again(*args)
        ref = fn(*args)
        np.testing.assert_array_equal(np.asarray(out['rows']), np.asarray(ref['rows']))
        np.testing.assert_allclose(float(out['sum']), float(ref['sum']), rtol=1e-14)
    assert calls == [1] + [1] * 3    # only the three reference calls above ran the body
    np.testing.assert_array_equal(np.asarray(got['rows']), np.asarray(expected['rows']))


def test_new_shapes_static_data_or_closures_make_new_programs(cache):
    fn, calls = counted(1.0)
    wrapped = traced.jit(fn, name='test.counted', static=1.0)
    wrapped(*arguments(4, 0))
    wrapped(*arguments(5, 0))                        # another shape
    other, _ = counted(2.0)
    shifted = traced.jit(other, name='test.counted', static=2.0)(*arguments(4, 0))
    assert len(calls) == 2 and len(glob.glob(str(cache / '*'))) == 3
    np.testing.assert_allclose(np.asarray(shifted['rows']),
                               np.asarray(fn(*arguments(4, 0))['rows']) + 1.0, rtol=1e-14)


def test_a_damaged_file_is_traced_again(cache):
    fn, calls = counted(1.0)
    traced.jit(fn, name='test.counted', static=1.0)(*arguments(4, 0))
    (path,) = glob.glob(str(cache / '*'))
    with open(path, 'wb') as fh:
        fh.write(b'not a program')
    out = traced.jit(fn, name='test.counted', static=1.0)(*arguments(4, 0))
    assert len(calls) == 2 and os.path.getsize(path) > 100
    np.testing.assert_allclose(np.asarray(out['rows']), np.asarray(fn(*arguments(4, 0))['rows']))


def test_what_cannot_be_exported_runs_as_a_plain_jit_with_a_warning(cache):
    def host(x):
        return jax.pure_callback(lambda v: np.asarray(v) * 2.0,
                                 jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    wrapped = traced.jit(host, name='test.host')
    with pytest.warns(RuntimeWarning, match='traced in every process'):
        out = wrapped(np.arange(3.0))
    np.testing.assert_array_equal(np.asarray(out), [0.0, 2.0, 4.0])
    assert not glob.glob(str(cache / '*'))


def test_an_unnamed_lambda_is_refused():
    with pytest.raises(ValueError, match='give a name'):
        traced.jit(lambda x: x)
