"""The input time line and the torque path without ROS (``diffmsm_ros.live``)."""

import dataclasses

from diffmsm_ros import settings
from diffmsm_ros.emg.intake import EmgIntake
from diffmsm_ros.identify.excitation import activations
from diffmsm_ros.live import torque as torque_mod
from diffmsm_ros.live.timeline import InputTimeline, TimelineConfig, Torque, Withheld
from diffmsm_ros.live.torque import TorquePath
from diffmsm_ros.live.velocity import CausalVelocity
from diffmsm_ros.model import dynamics, excitation, schema
import jax.numpy as jnp
import numpy as np
import pytest

SEEDS = range(4)          # every statistical or randomised claim runs on these draws
T0 = 1_700_000_000 * 1_000_000_000


@pytest.fixture(scope='module')
def model(elbow):
    return elbow.model


@pytest.fixture(scope='module')
def delayed_model(model):
    """Give the elbow EMG delays, one of them a fraction of a model step."""
    mus = model.muscles
    delay = np.array([0.0, 0.013, 0.02, 0.0, 0.007, 0.0])
    return model.replace(muscles=dataclasses.replace(mus, emg_delay=delay))


@pytest.fixture(scope='module')
def paths(model, delayed_model):
    """One compiled torque path per model structure (compiling costs seconds)."""
    out = {'plain': TorquePath(model)}
    out['plain'].compile()
    out['delayed'] = TorquePath(delayed_model)
    return out


def excitation_rows(rng, steps, nm, h):
    t = np.arange(steps) * h
    freq = rng.uniform(0.3, 3.0, nm)
    phase = rng.uniform(0, 6, nm)
    return np.clip(0.3 + 0.25 * np.sin(2 * np.pi * freq[None, :] * t[:, None] + phase),
                   0.0, 1.0)


def reference_activation(model, rows):
    """Integrate the whole sequence as the identifier defines it: a_k before step k."""
    h = model.timestep
    history = int(np.ceil(schema.MAX_DELAY / h)) + 2
    padded = np.concatenate([np.repeat(rows[:1], history, axis=0), rows])
    u = np.asarray(excitation.delayed(model.muscles, jnp.asarray(padded), history, h,
                                      len(rows)))
    return np.asarray(activations(model, jnp.asarray(u), h)), u


@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('which', ['plain', 'delayed'])
def test_activation_at_the_stamp_is_the_exact_integration(paths, model, delayed_model, seed,
                                                          which):
    """Streamed in chunks of any size, the activation at a stamp is the batch integration."""
    subject = model if which == 'plain' else delayed_model
    path = paths[which]
    path.set_model(subject)
    path.reset()
    h = subject.timestep
    rng = np.random.default_rng(seed)
    rows = excitation_rows(rng, 1500, subject.n_muscles, h)
    a_ref, u_ref = reference_activation(subject, rows)
    lead = int(np.ceil(0.02 / h))       # the longest delay, in whole steps
    t0 = 100.0
    k, nxt, errors = 0, 1, []
    q, qd = np.array([1.2]), np.array([0.3])
    while k < len(rows) - 20:
        n = int(rng.integers(1, 15))
        path.add_excitations(t0 + np.arange(k, k + n) * h, rows[k:k + n])
        k += n
        # stamps whose excitation is known for every muscle: on the grid or between
        for j in range(nxt, k - lead):
            frac = float(rng.choice([0.0, 0.25, 0.5]))
            out = path.at(t0 + (j + frac) * h, q, qd)
            rate = np.asarray(dynamics.activation_rate(subject, u_ref[j], a_ref[j]))
            errors.append(np.max(np.abs(out.activation - (a_ref[j] + frac * h * rate))))
        nxt = max(nxt, k - lead)
    assert len(errors) > 1000
    assert max(errors) < 1e-10


@pytest.mark.parametrize('seed', SEEDS)
def test_a_batch_of_stamps_gets_what_one_stamp_after_another_gets(paths, delayed_model, seed):
    """
    ``at_many`` (a node answering the samples that waited together) equals ``at`` one by one.

    Batches of 1 to 160 stamps at 1 kHz (several calls of ``BATCH``; some spanning more
    than ``STEPS`` grid steps), up to 80 grid steps beyond the newest excitation (more
    than one call's carry), between chunks of 1 to 30 rows of several delays.
    """
    path = paths['delayed']
    h = delayed_model.timestep
    rng = np.random.default_rng(seed)
    rows = excitation_rows(rng, 1200, delayed_model.n_muscles, h)
    chunks = np.cumsum(rng.integers(1, 30, 200))
    chunks = chunks[chunks < len(rows)]
    stamps = 100.0 + np.arange(1, int(len(rows) * h / 1e-3) - 40) * 1e-3
    q = 1.0 + 0.3 * np.sin(stamps)[:, None]
    qd = 0.3 * np.cos(stamps)[:, None]
    answers = {}
    for batched in (False, True):
        path.set_model(delayed_model)
        path.reset()
        got, i, k = [], 0, 0
        for end in chunks:
            path.add_excitations(100.0 + np.arange(k, end) * h, rows[k:end])
            k = end
            # the samples up to some way beyond the newest row, in batches of 1 to 160
            last = np.searchsorted(stamps, 100.0 + (end + rng.integers(-5, 80)) * h)
            while i < last:
                n = min(last - i, int(rng.integers(1, 161)))
                if batched:
                    got += path.at_many(stamps[i:i + n], q[i:i + n], qd[i:i + n])
                else:
                    got += [path.at(stamps[j], q[j], qd[j]) for j in range(i, i + n)]
                i += n
        answers[batched] = got
        rng = np.random.default_rng(seed)      # the same chunks and batches again
        excitation_rows(rng, 1200, delayed_model.n_muscles, h)
        rng.integers(1, 30, 200)
    assert len(answers[True]) == len(answers[False]) > 1000
    for one, many in zip(answers[False], answers[True]):
        for field in ('torque', 'activation', 'fibre_velocity', 'force'):
            np.testing.assert_allclose(getattr(many, field), getattr(one, field),
                                       rtol=1e-12, atol=1e-12)


def test_beyond_the_newest_sample_the_excitation_follows_its_slope_then_holds(paths, model):
    path = paths['plain']
    path.set_model(model)
    path.reset()
    h = model.timestep
    rows = excitation_rows(np.random.default_rng(7), 300, model.n_muscles, h)
    t0 = 50.0
    path.add_excitations(t0 + np.arange(300) * h, rows)
    q, qd = np.array([1.0]), np.array([0.0])
    k_stamp = 299 + 12      # 24 ms after the newest sample: 10 ms of slope, then held
    out = path.at(t0 + k_stamp * h, q, qd)
    slope = (rows[-1] - rows[-3]) / (2 * h)
    ahead = np.arange(300, k_stamp + 1)
    extended = rows[-1] + np.minimum((ahead - 299) * h, torque_mod.AHEAD)[:, None] * slope
    a_ref, _ = reference_activation(model, np.concatenate([rows, extended]))
    np.testing.assert_allclose(out.activation, a_ref[k_stamp], atol=1e-12)
    # the committed state did not move past the data: a later chunk still counts
    assert path.kc == path.final + 1


def test_outputs_are_the_models_and_a_swap_does_not_compile(paths, model):
    path = paths['plain']
    path.set_model(model)
    path.reset()
    h = model.timestep
    rows = np.full((50, model.n_muscles), 0.2)
    path.add_excitations(10.0 + np.arange(50) * h, rows)
    q, qd = np.array([1.1]), np.array([-0.4])
    out = path.at(10.0 + 49 * h, q, qd)
    state = dynamics.muscle_state(model, jnp.asarray(q), jnp.asarray(qd),
                                  jnp.asarray(out.activation))
    np.testing.assert_allclose(out.torque, state.torque, rtol=1e-12)
    np.testing.assert_allclose(out.force, -np.asarray(state.force), rtol=1e-12)
    np.testing.assert_allclose(out.fibre_velocity, state.fiber_velocity, rtol=1e-12)
    compiled = [call._cache_size() for call in path._calls.values()]
    stronger = model.replace(muscles=dataclasses.replace(
        model.muscles, max_isometric_force=2 * np.asarray(model.muscles.max_isometric_force)))
    path.set_model(stronger)
    twice = path.at(10.0 + 49 * h, q, qd)
    assert [call._cache_size() for call in path._calls.values()] == compiled
    # force scales with F0 (active and passive parts alike)
    np.testing.assert_allclose(twice.torque, 2 * out.torque, rtol=1e-9)


def test_velocity_follows_a_quadratic_without_lag_and_averages_noise():
    h = 0.002
    t = np.arange(400) * h
    q = 0.3 + 0.8 * t - 1.5 * t ** 2
    filt = CausalVelocity(0.04)
    for tk, qk in zip(t, q):
        filt.push(tk, np.array([qk]))
    assert filt.estimate()[0] == pytest.approx(0.8 - 3.0 * t[-1], abs=1e-9)
    # uneven stamps: still exact
    filt = CausalVelocity(0.04)
    jitter = t + np.random.default_rng(0).uniform(-3e-4, 3e-4, t.shape)
    for tk in jitter:
        filt.push(tk, np.array([0.3 + 0.8 * tk - 1.5 * tk ** 2]))
    assert filt.estimate()[0] == pytest.approx(0.8 - 3.0 * jitter[-1], abs=1e-8)
    # encoder noise: a fraction of a backward difference's
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        noisy = rng.normal(0.0, 1e-4, t.shape)
        filt = CausalVelocity(0.04)
        estimates = []
        for tk, qk in zip(t, noisy):
            filt.push(tk, np.array([qk]))
            estimates.append(filt.estimate()[0])
        ratio = np.std(estimates[40:]) / np.std(np.diff(noisy) / h)
        assert ratio < 0.15, (seed, ratio)


def test_velocity_fit_is_the_least_squares_quadratic_slope_compiled_or_not():
    from diffmsm_ros.live import velocity
    forms = [velocity.slope] + [velocity.slope.py_func] * hasattr(velocity.slope, 'py_func')
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 7, 40):
        t = np.sort(rng.uniform(0.0, 0.04, n)) + 3.0
        q = rng.normal(size=(n, 2))
        if n >= 3:
            want = [np.polyder(np.polyfit(t - t[-1], q[:, j], 2))[-1] for j in range(2)]
        elif n == 2:
            want = (q[1] - q[0]) / (t[1] - t[0])
        else:
            want = np.zeros(2)
        for form in forms:
            out = np.empty(2)
            # the window's samples in the middle of a longer buffer
            pad_t, pad_q = np.concatenate([[0.0], t, [9.0]]), np.vstack([q[:1], q, q[:1]])
            form(pad_t, pad_q, 1, n + 1, out)
            np.testing.assert_allclose(out, want, rtol=1e-7, atol=1e-9)


class Sink:
    """Collect what the identifier would get."""

    def __init__(self):
        self.encoders, self.excitations = [], []

    def put_encoders(self, t, q, qd, tau):
        self.encoders.append(t)

    def put_excitations(self, t, u, noise=None):
        self.excitations.append((np.asarray(t), np.asarray(u)))


def make_timeline(model, path, values=None, **config):
    values = dict(settings.defaults(), **(values or {}))
    path.set_model(model)
    path.reset()
    sink = Sink()
    intake = EmgIntake(settings.emg_config(values), model.muscle_names)
    timeline = InputTimeline(TimelineConfig(**config), intake, path, sink=sink)
    return timeline, sink


def feed(timeline, model, seconds, emg_chunk=5, emg=None, encoders=None, start=0.0,
         emg_value=0.2, late=None, emg_delay=None):
    """
    Send encoders and EMG at 500 Hz (chunks of ``emg_chunk``) as a recorder would.

    ``emg_delay(k)``: s the EMG chunk ending at step k is published after its newest sample.
    """
    h = model.timestep
    out = []
    steps = int(round(seconds / h))
    for k in range(steps):
        t_ns = T0 + int(round((start + k * h) * 1e9))
        if encoders is None or encoders(k):
            published = t_ns
            wall = t_ns + (int(late * 1e9) if late is not None else 0)
            res = timeline.on_encoder(t_ns, np.array([1.0]), np.array([0.0]), np.zeros(1),
                                      now_ns=t_ns, published_ns=published, wall_ns=wall)
            out.append((k, res))
        if (k + 1) % emg_chunk == 0 and (emg is None or emg(k)):
            chunk = np.full((emg_chunk, model.n_muscles), emg_value)
            delay = 0 if emg_delay is None else int(round(emg_delay(k) * 1e9))
            timeline.on_emg(chunk, t_ns + delay, t_ns + 1 + delay)
    return out


def test_stale_emg_withholds_and_resumes(paths, model):
    timeline, _ = make_timeline(model, paths['plain'], stale_timeout=0.1)
    out = feed(timeline, model, 3.0, emg=lambda k: not 500 <= k < 1000)
    kinds = {k: type(r).__name__ for k, r in out}
    # EMG missing from 1.0 s to 2.0 s: withheld from 0.1 s after the last chunk on
    assert all(kinds[k] == 'Torque' for k in range(5, 540))
    assert all(out[k][1] == Withheld('stale') for k in range(560, 1000))
    assert all(kinds[k] == 'Torque' for k in range(1005, 1500))
    assert timeline.counts['withheld_stale'] == sum(r == Withheld('stale') for _, r in out)


def test_every_encoder_sample_is_answered_or_counted(paths, model):
    # samples 300..309 never arrive; samples after 1 s reach the node 0.2 s late
    timeline, _ = make_timeline(model, paths['plain'], deadline=0.1)
    out = feed(timeline, model, 1.0, encoders=lambda k: not 300 <= k < 310)
    feed(timeline, model, 0.5, start=1.0, late=0.2)
    c = timeline.counts
    assert c['encoder_gaps'] == 10
    assert c['withheld_late'] == 250
    assert c['torque_published'] + c['withheld_late'] + c['withheld_no_emg'] + \
        c['withheld_stale'] + c['encoder_gaps'] == 750
    assert sum(isinstance(r, Torque) for _, r in out) == c['torque_published']


def test_a_stalled_source_catching_up_in_a_burst_is_not_counted_as_gaps(paths, model):
    """
    Stamped as sent, a stall then a burst: no gap; samples that never came: counted.

    1 kHz for 0.5 s; the source stalls 30 ms and sends the 30 samples it held back 10 us
    apart; later 10 samples never come.
    """
    timeline, _ = make_timeline(model, paths['plain'])
    t_ns = T0

    def send(t_ns):
        timeline.on_encoder(t_ns, np.array([1.0]), np.array([0.0]), np.zeros(1))

    for _ in range(500):
        t_ns += 1_000_000
        send(t_ns)
    t_ns += 30_000_000                       # the stall
    send(t_ns)
    for _ in range(29):                      # its catch-up
        t_ns += 10_000
        send(t_ns)
    for _ in range(200):
        t_ns += 1_000_000
        send(t_ns)
    assert timeline.counts['encoder_gaps'] == 0
    t_ns += 11_000_000                       # 10 samples lost
    for _ in range(200):
        send(t_ns)
        t_ns += 1_000_000
    assert timeline.counts['encoder_gaps'] == 10
    assert timeline.counts['encoders'] == 930


def test_stamps_time_jumps_and_bad_input(paths, model):
    timeline, _ = make_timeline(model, paths['plain'])
    feed(timeline, model, 0.5)
    last = timeline.last_encoder
    assert timeline.on_encoder(last, np.ones(1), None, np.zeros(1)) == Withheld('bad')
    assert timeline.on_encoder(last + 10 ** 13, np.ones(1), None, np.zeros(1),
                               now_ns=last) == Withheld('bad')
    assert timeline.counts['bad_joint_states.repeated_stamp'] == 1
    assert timeline.counts['bad_joint_states.future_stamp'] == 1
    # the bag plays again from its start: buffers cleared, counted, torque resumes
    out = feed(timeline, model, 0.5)
    assert timeline.counts['time_jumps'] == 1
    assert isinstance(out[-1][1], Torque)


@pytest.mark.parametrize('declared', [1000.0, 250.0])
def test_emg_rate_disagreeing_with_its_setting_is_an_error_naming_it(paths, model, declared):
    """One sample per message at 500 Hz is laid at the measured rate; the setting is reported."""
    timeline, sink = make_timeline(model, paths['plain'], {'emg.sample_rate': declared})
    feed(timeline, model, 3.0, emg_chunk=1)
    (level, text), = timeline.rate_problems()
    assert level == 'ERROR'
    assert 'emg.sample_rate' in text and '500' in text and f'{declared:g}' in text
    assert 'measured rate meanwhile' in text
    times = np.concatenate([t for t, _ in sink.excitations])
    np.testing.assert_allclose(np.diff(times), model.timestep, rtol=1e-6)
    good, _ = make_timeline(model, paths['plain'], {'emg.sample_rate': 500.0})
    feed(good, model, 3.0, emg_chunk=1)
    assert good.rate_problems() == []


def one_sample_delays(seed, steps):
    """Publish delays (s) of a publisher under load: mostly 0-0.2 ms, one in five 1-8 ms."""
    rng = np.random.default_rng(seed)
    stalled = rng.random(steps) < 0.2
    return np.where(stalled, rng.uniform(1e-3, 8e-3, steps), rng.uniform(0.0, 2e-4, steps))


@pytest.mark.parametrize('declared', [500.0, 1000.0])
@pytest.mark.parametrize('seed', range(3))
def test_one_sample_per_message_is_laid_on_a_sample_clock(paths, model, declared, seed):
    """
    EMG one sample per message, published up to 8 ms late: timed within 0.25 ms.

    Their own publish times would be up to 8 ms late, out of order after a stall (a
    sample older than the newest is dropped).  Once the rate is measured (1 s of stamps)
    the samples lie on a clock at the declared rate, or at the measured one when the
    declared rate is wrong.
    """
    h = model.timestep
    delays = one_sample_delays(seed, 2000)
    timeline, sink = make_timeline(model, paths['plain'], {'emg.sample_rate': declared})
    feed(timeline, model, 4.0, emg_chunk=1, emg_delay=lambda k: delays[k])
    times = np.concatenate([t for t, _ in sink.excitations])
    late = times[times >= 2.0]
    error = late - np.round(late / h) * h
    assert np.all(np.abs(error) <= 2.5e-4), np.abs(error).max()
    assert len(late) >= 0.99 * (4.0 - 2.0) / h


@pytest.mark.parametrize('declared, share', [(1000.0, 0.3), (500.0, 0.3), (500.0, 0.05)])
def test_one_sample_per_message_with_messages_lost_keeps_their_own_times(paths, model,
                                                                         declared, share):
    """Messages lost: no clock (it would put a sample after a gap early), own times kept."""
    h = model.timestep
    lost = np.random.default_rng(5).random(2000) < share
    timeline, sink = make_timeline(model, paths['plain'], {'emg.sample_rate': declared})
    feed(timeline, model, 4.0, emg_chunk=1, emg=lambda k: not lost[k])
    times = np.concatenate([t for t, _ in sink.excitations])
    np.testing.assert_allclose(times, np.round(times / h) * h, atol=1e-9)
    assert timeline.clock_rate is None


def test_raw_emg_lag_is_compensated_once_for_both_consumers(paths, model):
    values = {'emg.kind': 'raw', 'emg.sample_rate': 2000.0}
    timeline, sink = make_timeline(model, paths['plain'], values)
    rng = np.random.default_rng(0)
    h = model.timestep
    for k in range(250):
        t_ns = T0 + int(round(k * h * 1e9))
        if k % 5 == 4:
            timeline.on_emg(1e-3 * rng.standard_normal((20, model.n_muscles)), t_ns, t_ns + 1)
        timeline.on_encoder(t_ns, np.ones(1), np.zeros(1), np.zeros(1), now_ns=t_ns,
                            published_ns=t_ns, wall_ns=t_ns)
    lag = timeline.intake.lag
    assert 0.03 < lag < 0.05
    newest = timeline.emg_newest
    assert sink.excitations[-1][0][-1] == pytest.approx(newest - lag)
    assert paths['plain'].newest == pytest.approx(newest - lag)


@pytest.mark.parametrize('seed', SEEDS)
def test_step_times_report_recent_percentiles_and_session_counts(seed):
    """Percentiles over the last ``recent`` times; counts of slower samples over all of them."""
    from diffmsm_ros.live.step_times import EDGES_MS, StepTimes
    times = StepTimes(recent=500)
    assert np.isnan(times.values()['step_ms_p99']) and times.values()['steps'] == 0
    rng = np.random.default_rng(seed)
    seconds = rng.lognormal(np.log(2e-4), 1.2, 1700)
    # the handling thread on the CPU for a share of each sample's wall time
    cpu = seconds * rng.uniform(0.0, 1.0, seconds.size)
    for s, c in zip(seconds, cpu):
        times.add(float(s), float(c))
    values = times.values()
    recent = seconds[-500:] * 1e3
    assert values['step_ms_p50'] == pytest.approx(np.percentile(recent, 50), rel=1e-12)
    assert values['step_ms_p99'] == pytest.approx(np.percentile(recent, 99), rel=1e-12)
    assert values['step_ms_max'] == pytest.approx(recent.max(), rel=1e-12)
    assert values['steps'] == 1700
    for edge in EDGES_MS:
        assert values[f'steps_over_{edge:g}ms'] == int(np.sum(seconds * 1e3 > edge))
        assert values[f'steps_over_{edge:g}ms_on_cpu'] == int(np.sum(cpu * 1e3 > edge))
    # without a CPU time every slow sample counts as working
    plain = StepTimes()
    for s in seconds:
        plain.add(float(s))
    assert plain.values()['steps_over_0.5ms_on_cpu'] == plain.values()['steps_over_0.5ms']


def test_a_reset_drops_samples_not_yet_handed_to_the_identifier(paths, model):
    """Admitted but not fed (the node feeds after publishing): a reset keeps them from it."""
    timeline, sink = make_timeline(model, paths['plain'])
    feed(timeline, model, 0.2)
    handed = len(sink.encoders)
    assert handed == int(round(0.2 / model.timestep))       # each fed after its torque
    t_ns = T0 + int(round(0.3 * 1e9))
    timeline.admit(t_ns, np.array([1.0]), np.array([0.0]), np.zeros(1), now_ns=t_ns)
    timeline.reset()
    timeline.feed()
    assert len(sink.encoders) == handed
    feed(timeline, model, 0.1, start=1.0)                   # the stream after the reset
    assert len(sink.encoders) == handed + int(round(0.1 / model.timestep))
