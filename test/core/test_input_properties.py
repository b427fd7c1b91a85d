"""
Property-based tests: message converters, the EMG pipeline and the model-file loader.

Whatever arrives, they either return finite values of the right shape or refuse with
their own error type (never a crash, never a NaN handed on).
"""

from diffmsm_ros import settings
from diffmsm_ros.emg.intake import EmgError, EmgIntake, low_percentile
from diffmsm_ros.files import modelfile
from diffmsm_ros.nodes import convert
from hypothesis import given, HealthCheck, settings as hsettings, strategies as st
import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

JOINTS = ['r_elbow_flex']
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
names = st.lists(st.sampled_from(['r_elbow_flex', 'r_shoulder', 'wrist', '']), max_size=4)


@hsettings(max_examples=300, deadline=None)
@given(names=names, position=st.lists(floats, max_size=5), velocity=st.lists(floats, max_size=5),
       effort=st.lists(floats, max_size=5), sec=st.integers(0, 2 ** 31 - 1),
       nanosec=st.integers(0, 999_999_999))
def test_joint_states_converter(names, position, velocity, effort, sec, nanosec):
    msg = JointState(name=names, position=position, velocity=velocity, effort=effort)
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    try:
        stamp, q, qd, tau = convert.joint_sample(msg, JOINTS)
    except convert.InputError as err:
        assert str(err)
        return
    assert stamp == sec * 1_000_000_000 + nanosec
    assert q.shape == (1,) and tau.shape == (1,) and np.all(np.isfinite(q))
    assert np.all(np.isfinite(tau))
    assert qd is None or (qd.shape == (1,) and np.all(np.isfinite(qd)))
    # the value comes from the named joint, not from another position in the arrays
    assert q[0] == position[names.index('r_elbow_flex')]


@hsettings(max_examples=300, deadline=None)
@given(data=st.lists(floats, max_size=40), dims=st.lists(
    st.tuples(st.sampled_from(['samples', 'channels', 'x']), st.integers(0, 12)), max_size=3),
    offset=st.integers(0, 5))
def test_emg_array_converter(data, dims, offset):
    msg = Float64MultiArray(data=data)
    msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=0)
                      for label, size in dims]
    msg.layout.data_offset = offset
    try:
        chunk = convert.emg_chunk(msg, 6)
    except convert.InputError as err:
        assert str(err)
        return
    assert chunk.ndim == 2 and chunk.shape[1] == 6 and chunk.shape[0] >= 1


def emg_chunks(test):
    """Run ``test(intakes, rows, values, kind)`` on chunks of any floats, both EMG kinds."""
    return hsettings(max_examples=200, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])(
        given(rows=st.integers(1, 30), values=st.lists(floats, min_size=1, max_size=180),
              kind=st.sampled_from([0, 1]))(test))


@pytest.fixture(scope='module')
def intakes(elbow):
    values = settings.defaults()
    raw = dict(values, **{'emg.kind': 'raw', 'emg.sample_rate': 2000.0})
    names = elbow.model.muscle_names
    return EmgIntake(settings.emg_config(values), names), EmgIntake(settings.emg_config(raw),
                                                                    names)


@emg_chunks
def test_emg_pipeline_never_passes_nan(intakes, rows, values, kind):
    intake = intakes[kind]
    samples = np.resize(np.asarray(values, dtype=float), (rows, 6))
    try:
        u = intake.excitations(samples)
    except EmgError as err:
        assert str(err)
        return
    assert u.shape == (rows, 6)
    assert np.all(np.isfinite(u)) and np.all(u >= 0) and np.all(u <= 1)


@emg_chunks
def test_emg_check_names_what_is_wrong(intakes, rows, values, kind):
    """The check's verdict and code, against the contract's limits read one by one."""
    intake = intakes[kind]
    samples = np.resize(np.asarray(values, dtype=float), (rows, 6))
    if not np.all(np.isfinite(samples)):
        want = 'non_finite'
    elif kind == 1:
        want = 'out_of_range' if np.any(np.abs(samples) > 1e3) else None
    else:
        bad = np.any(samples < -0.05) or np.any(samples > intake.max_value)
        want = 'out_of_range' if bad else None
    try:
        intake.check(samples)
    except EmgError as err:
        assert err.code == want
    else:
        assert want is None
    if want is None and kind == 0:
        # an envelope: each muscle's channel, clipped to [0, 1] (one electrode per muscle)
        np.testing.assert_array_equal(intake.excitations(samples),
                                      np.clip(samples, 0.0, 1.0))
    with pytest.raises(EmgError) as err:
        intake.check(samples[:, :5])
    assert err.value.code == 'channel_count'


@hsettings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=60),
       percent=st.floats(0.0, 100.0))
def test_low_percentile_is_numpys_linear_percentile(values, percent):
    assert abs(low_percentile(values, percent) - np.percentile(values, percent)) <= 1e-12


yaml_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


@hsettings(max_examples=200, deadline=None)
@given(doc=yaml_values)
def test_model_loader_refuses_garbage_clearly(doc):
    import yaml
    text = yaml.safe_dump(doc)
    with pytest.raises(modelfile.ModelFileError):
        modelfile.loads(text)


@hsettings(max_examples=100, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(['muscles.BIClong.max_isometric_force', 'segments',
                             'joints.r_elbow_flex.damping', 'format', 'curves',
                             'muscles.BRA.optimal_fiber_length']),
       value=st.one_of(st.floats(allow_nan=True), st.text(max_size=5), st.none(),
                       st.integers(-10, 10)))
def test_model_loader_on_corrupted_template(elbow, path, value):
    import yaml
    doc = yaml.load(modelfile.dumps(elbow), Loader=yaml.CSafeLoader)
    node = doc
    keys = path.split('.')
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    try:
        sf = modelfile.loads(yaml.dump(doc, Dumper=yaml.CSafeDumper))
    except modelfile.ModelFileError as err:
        assert str(err)
        return
    # accepted: then every number in it is finite and within its bounds
    modelfile.check_bounds(sf)
    assert np.all(np.isfinite(np.asarray(sf.model.muscles.max_isometric_force)))


def test_raw_emg_read_as_an_envelope_is_refused_offline(elbow):
    # a raw bag identified without emg.kind: raw would fit muscles to volts of a carrier
    import types
    from diffmsm_ros.identify import offline
    rng = np.random.default_rng(0)
    raw = 1e-3 * rng.standard_normal((4000, 6))
    recording = types.SimpleNamespace(emg=raw, emg_t=np.arange(4000) / 2000.0)
    values = settings.defaults()
    with pytest.raises(offline.RecordingError, match='looks like raw EMG'):
        offline.excitations_from_recording(recording, settings.emg_config(values),
                                           elbow.model.muscle_names)
    envelope = types.SimpleNamespace(emg=np.abs(raw) * 100, emg_t=recording.emg_t)
    u, _ = offline.excitations_from_recording(envelope, settings.emg_config(values),
                                              elbow.model.muscle_names)
    assert u.shape == (4000, 6)
