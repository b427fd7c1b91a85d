"""Raw EMG, live: the session archive and the session fits (identify/session_fit.py)."""

import math

from diffmsm_ros import settings
from diffmsm_ros.identify import offline, params, session_fit
from diffmsm_ros.identify.online import OnlineIdentifier, SESSION_OWNED, SessionJob
from diffmsm_ros.identify.session_fit import SessionArchive
from diffmsm_ros.session import raw_emg, record
import numpy as np
import pytest
from sessions import raw_session

SEED = 0
DURATION = 75.0       # s of session
FIRST = 60.0          # s before the first session fit (the default, 120 s, is too long here)
PERTURB = 0.15        # the subject's spread about the template
PERIOD = 3.0          # s of data fed between looks for a due session fit


def test_the_archive_stays_bounded_and_spans_the_session():
    archive = SessionArchive(span=4.5, limit=10)
    for k in range(1000):
        archive.add(k)          # the chunk's index stands for its window
    kept = [k for k, _ in archive.entries]
    assert len(kept) <= 10 and archive.stride > 1
    # every stride-th chunk from the first, up to the newest stride
    assert kept[0] == 0 and np.all(np.diff(kept) == archive.stride)
    assert 1000 - kept[-1] <= archive.stride
    assert archive.windows == kept and archive.seconds == pytest.approx(4500.0)
    assert archive.since(900) == [k for k in kept if k >= 900]


def test_session_fits_are_due_after_first_and_then_as_the_data_grow():
    archive = SessionArchive(span=1.0)
    starts = []
    for _ in range(2000):
        archive.add(None)
        if archive.due():
            starts.append(archive.seconds)
            archive.start()
    assert starts[0] == math.ceil(session_fit.FIRST)
    ratio = np.array(starts[1:]) / np.array(starts[:-1])
    # each the first chunk at which the data grew by GROWTH
    assert np.all(ratio >= session_fit.GROWTH)
    assert np.all(ratio < session_fit.GROWTH + 1.0 / np.array(starts[:-1]) + 1e-9)


def feed(ident, recording, excitations, emg_t):
    """Feed the session PERIOD s at a time, running each session fit due; return them."""
    fits = []
    for end in np.arange(PERIOD, DURATION + PERIOD, PERIOD):
        for k in np.flatnonzero((recording.joint_t > end - PERIOD) &
                                (recording.joint_t <= end)):
            ident.add_encoders(recording.joint_t[k], recording.position[k],
                               recording.velocity[k], recording.effort[k])
        now = (emg_t > end - PERIOD) & (emg_t <= end)
        ident.add_excitations(emg_t[now], excitations[now])
        result = ident.session_fit()
        if result is not None:
            fits.append(result)
    return fits


@pytest.fixture(scope='module')
def session(elbow):
    """Return (truth, Recording, settings values) of the raw-EMG session these tests use."""
    values = dict(settings.defaults(), **{
        'emg.kind': 'raw', 'emg.sample_rate': record.RAW_RATE,
        'emg.mvc': [raw_emg.calibrate_mvc(record.RAW_AMPLITUDE, record.RAW_RATE)] * 6})
    truth, recording = raw_session(elbow, SEED, DURATION, PERTURB)
    return truth, recording, values


@pytest.fixture(scope='module')
def run(elbow, session):
    """
    Replay a session through an identifier that runs due session fits.

    What a session fit is worth takes minutes of raw EMG to show (one minute determines
    the muscles to about 30 %): ``bench/fatigue_live.py --emg raw`` measures it live over
    15 minutes.  Here: that it runs, is checked and takes over.
    """
    truth, recording, values = session
    config = settings.identify_config(values)
    emg = settings.emg_config(values, elbow.model.muscle_names)
    excitations, emg_t, noise = offline.excitations_from_recording(
        recording, emg, elbow.model.muscle_names, with_noise=True)
    ident = OnlineIdentifier(elbow, config, lowpass=emg.lowpass)
    ident.envelope_noise = noise
    first = session_fit.FIRST
    session_fit.FIRST = FIRST
    try:
        fits = feed(ident, recording, excitations, emg_t)
    finally:
        session_fit.FIRST = first
    # the chunks archived since the fit started wait for the tracker (memory is on)
    fitted = ident.z.copy()
    waiting = len(ident.pending)
    tracked = ident.update()
    return truth, ident, fits, (fitted, waiting, tracked)


@pytest.mark.slow
def test_a_session_fit_runs_when_due_is_checked_and_takes_over(run):
    truth, ident, fits, _ = run
    # one fit was due (at FIRST s of archived data; the next one only at GROWTH times that)
    assert len(fits) == 1 and fits[0].accepted and ident.session_fits == 1
    assert FIRST <= fits[0].session_seconds < FIRST + ident.archive.span
    # checked on the data the fit did not see against the template
    assert fits[0].holdout_after < fits[0].holdout_before
    # the model is the fit's, with its 1-sigma values (the envelope's information in them)
    assert ident.last_analysis is not None
    assert np.all(np.isfinite(ident.last_analysis.std))
    assert np.all(ident.last_analysis.std > 0)
    # the online updates leave the model to the session fits and the tracker; with no
    # chunk waiting for it, an update changes nothing
    z = ident.z.copy()
    assert not ident.pending
    assert ident.update().reason == SESSION_OWNED and np.array_equal(ident.z, z)
    summary = ident.identification_summary()
    assert summary['session_fits'] == 1
    assert summary['session_archive_seconds'] >= DURATION - ident.config.window


@pytest.mark.slow
def test_a_session_fit_worse_than_the_template_is_not_adopted(run):
    _, ident, _, _ = run
    # the last two archived chunks held out, as if they came while the fit ran
    archive = ident.archive
    job = SessionJob(archive.chunks - 2, (archive.chunks - 2) * archive.span,
                     archive.windows[:-2], ident.envelope_noise, ident.lowpass,
                     tuple(k for k, _ in archive.entries[:-2]))
    z_before, accepted = ident.z.copy(), ident.accepted
    space = ident.problem.space
    muscles = space.mask(lambda e: e.section == 'muscles')
    bad = np.clip(np.where(muscles, -1.0, ident.z), space.lower, space.upper)
    result = ident.adopt_session(job, bad)
    assert not result.accepted and 'worse than the template' in result.reason
    assert result.holdout_after > result.holdout_before
    assert np.array_equal(ident.z, z_before) and ident.accepted == accepted


@pytest.mark.slow
def test_a_later_session_fit_must_fit_the_held_data_nearly_as_well_as_the_tracked_model(run):
    _, ident, _, _ = run
    archive = ident.archive
    held = archive.since(archive.chunks - 2)
    now = ident.z.copy()
    halfway = 0.5 * now
    cost = ident.problem.cost
    assert cost(0.0 * now, held) > cost(0.25 * now, held) > cost(halfway, held) > cost(
        now, held)
    # refused exactly when more than the margin worse than the tracked model
    refused = []
    for share in (1.0, 0.9, 0.75, 0.5, 0.25):
        reason, _, after = ident.session_refusal(share * now, held, now)
        assert after == cost(share * now, held)
        worse = after > session_fit.TRACKED_MARGIN * cost(now, held)
        assert ('worse than the tracked model' in reason) == worse and (reason == '') != worse
        refused.append(worse)
    assert not refused[0] and refused[-1]
    assert ident.session_refusal(halfway, held, 0.25 * now)[0] == ''
    # no tracker: only the template counts
    assert ident.session_refusal(halfway, held)[0] == ''
    assert 'worse than the template' in ident.session_refusal(-now, held)[0]


@pytest.mark.slow
def test_after_a_session_fit_the_tracker_moves_the_strengths_only(run):
    _, ident, fits, (fitted, waiting, result) = run
    assert fits[0].accepted and ident.tracker is not None
    # the chunks the fit did not see, all taken in one update
    assert waiting >= 1 and ident.tracked == waiting and not ident.pending
    assert ident.tracking_refused == 0
    space = ident.problem.space
    strengths = space.mask(lambda e: e.field == 'max_isometric_force')
    assert np.array_equal(ident.tracker.mask, strengths)
    # the belief moved along the strengths alone, and what it carries grew there
    belief = ident.tracker.belief
    assert np.any(belief.mean[strengths] != fitted[strengths])
    assert np.array_equal(belief.mean[~strengths], fitted[~strengths])
    # published when it fits the newest data no worse than the template, as a fit is
    if result.accepted:
        assert result.holdout_after <= result.holdout_before
        assert np.array_equal(ident.z, belief.mean)
        assert np.all(np.isfinite(ident.last_analysis.std))
        assert ident.identification_summary()['tracked_chunks'] == waiting
    else:
        assert 'worse than the template' in result.reason
        assert np.array_equal(ident.z, fitted)


def identify_offline(elbow, session, monkeypatch, **changes):
    """
    Run ``offline.identify_recording`` on the session.

    Returns (SubjectFile, [(result, model z, chunks archived) per history row], identifier).
    """
    _, recording, values = session
    values = dict(values, **changes)
    monkeypatch.setattr(session_fit, 'FIRST', FIRST)
    rows, seen = [], []

    def on_update(result, ident):
        rows.append((result, ident.z.copy(), ident.archive.chunks))
        seen[:] = [ident]

    sf, _, _ = offline.identify_recording(
        elbow, recording, settings.identify_config(values),
        settings.emg_config(values, elbow.model.muscle_names), on_update=on_update)
    return sf, rows, seen[0]


@pytest.mark.slow
def test_offline_identify_on_raw_emg_ends_with_the_nodes_tracked_model(elbow, session,
                                                                       monkeypatch):
    # diffmsm identify runs what the node runs: the session fit when due, decided once
    # HELD_OUT chunks came after it, then the tracker; the model is the tracked one
    sf, rows, ident = identify_offline(elbow, session, monkeypatch)
    fits = [k for k, (result, _, _) in enumerate(rows) if result.session_seconds > 0]
    assert len(fits) == 1
    fit, adopted, chunks = rows[fits[0]]
    span = ident.archive.span
    assert fit.accepted and FIRST <= fit.session_seconds < FIRST + span
    assert chunks * span >= fit.session_seconds + session_fit.HELD_OUT * span
    assert sf.identification['final_fit'] == 'session fits, strengths tracked (raw EMG)'
    assert sf.identification['session_fits'] == 1
    assert sf.identification['tracked_chunks'] >= 1
    # the tracker moved the strengths after the fit, and only them
    space = ident.problem.space
    theta = params.values(sf.model, space)
    at_fit = np.asarray(ident.problem.theta_of(adopted))
    strengths = space.mask(lambda e: e.field == 'max_isometric_force')
    assert strengths.sum() == 6
    assert np.max(np.abs(theta[strengths] / at_fit[strengths] - 1.0)) > 1e-6
    np.testing.assert_allclose(theta[~strengths], at_fit[~strengths], rtol=1e-9)
    # with the tracked belief's 1-sigma values
    # each 1-sigma at least the tracked belief's (the drift) and the whole session's
    # analysis (residuals correlated in time, the envelope's error)
    belief = ident.last_analysis
    assert any('carried over the session' in w for w in belief.warnings)
    assert not any('beyond what the encoders alone' in w for w in belief.warnings)
    std = np.array([sf.std['muscles'][e.name][e.field] for e in space.entries
                    if e.section == 'muscles'])
    muscles = space.mask(lambda e: e.section == 'muscles')
    assert len(std) == 18 and np.all(np.isfinite(std))
    assert np.all(std >= belief.std[muscles] * (1 - 1e-9))
    assert any('beyond what the encoders alone' in w for w in sf.identification['warnings'])


@pytest.mark.slow
def test_offline_identify_on_raw_emg_without_memory_fits_the_whole_session_once(
        elbow, session, monkeypatch):
    sf, rows, _ = identify_offline(elbow, session, monkeypatch,
                                   **{'identification.memory': False})
    assert not any(result.session_seconds > 0 for result, _, _ in rows)
    assert sf.identification['final_fit'] == 'corrected equation error (raw EMG)'
