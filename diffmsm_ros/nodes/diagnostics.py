"""
What the node reports on /diagnostics, computed without ROS.

Three statuses (inputs, torque, identifier), each (name, level, message, {key: value}).
"""

import time

import numpy as np

BAD_RECENT = 10.0   # s a bad input keeps the inputs status at WARN
LEVELS = ('OK', 'WARN', 'ERROR')


def _worst(*levels):
    return max(levels, key=LEVELS.index)


def inputs_status(timeline, stale_timeout, now=None, rate_problems=None):
    """Rates, staleness, bad inputs and the EMG clock of the input time line."""
    now = time.monotonic() if now is None else now
    ages = {kind: now - timeline.receipt[kind] if kind in timeline.receipt else float('inf')
            for kind in ('encoders', 'emg')}
    problems, level = [], 'OK'
    if not timeline.receipt:
        level, problems = 'WARN', ['waiting for EMG and encoders']
    elif timeline.stale or max(ages.values()) > stale_timeout:
        level, problems = 'ERROR', ['stale input: torque withheld']
    if rate_problems is None:
        rate_problems = timeline.rate_problems()
    for rate_level, text in rate_problems:
        level = _worst(level, rate_level)
        problems.append(text)
    recent = {k: reason for k, (reason, at) in timeline.bad.items() if now - at < BAD_RECENT}
    if recent:
        level = _worst(level, 'WARN')
    problems += [f'bad {k}: {reason}' for k, reason in recent.items()]
    counts = timeline.counts
    intake = timeline.intake
    values = {'encoder_rate_hz': timeline.rates['encoders'].rate(),
              'emg_rate_hz': timeline.rates['emg'].rate(),
              'encoder_age_s': ages['encoders'], 'emg_age_s': ages['emg'],
              'bad_joint_states': counts['bad_joint_states'], 'bad_emg': counts['bad_emg'],
              'time_jumps': counts['time_jumps'], 'emg_clipped': intake.clipped,
              'emg_clock_anchors': intake.anchors}
    values.update({k: v for k, v in counts.items() if k.startswith('bad_') and '.' in k})
    ages = np.asarray(timeline.emg_ages, dtype=float) * 1e3
    if ages.size:
        # how far the newest EMG is behind each encoder sample: the span the activation is
        # carried over without data (raw EMG adds the filter's lag)
        values.update(zip(('emg_age_ms_p50', 'emg_age_ms_p99', 'emg_age_ms_max'),
                          [*np.percentile(ages, [50, 99]), ages.max()]))
    values.update(_offset_stats(intake.offsets))
    values.update(_envelope_error_stats(intake.filter))
    text = '; '.join(problems) or 'receiving EMG and encoders'
    return 'diffmsm: inputs', level, text, values


def torque_status(timeline, steps, now=None):
    """Every encoder sample answered or counted, and ``steps``: ``StepTimes.values()``."""
    now = time.monotonic() if now is None else now
    counts = timeline.counts
    values = {'encoder_samples': counts['encoders'], 'published': counts['torque_published'],
              'withheld_stale': counts['withheld_stale'],
              'withheld_late': counts['withheld_late'],
              'withheld_no_emg': counts['withheld_no_emg'],
              'withheld_nonfinite': counts['withheld_nonfinite'],
              'encoder_gaps': counts['encoder_gaps'],
              'longest_wait_ms': 1e3 * timeline.longest_wait, **steps}
    if timeline.stale:
        return 'diffmsm: torque', 'ERROR', 'withheld (stale input)', values
    if timeline.lost_at is not None and now - timeline.lost_at < BAD_RECENT:
        return ('diffmsm: torque', 'WARN', f'samples lost in the last {BAD_RECENT:g} s; in '
                f'all {counts["withheld_late"]} later than the deadline, '
                f'{counts["encoder_gaps"]} never arrived', values)
    return 'diffmsm: torque', 'OK', 'publishing', values


def collect(timeline, lock, stale_timeout, step_times, worker, last_result, log):
    """
    Return the node's statuses [(name, level, message, values)] and its input-rate errors.

    Inputs and torque are read under ``lock`` (the time line's; the handling times
    ``step_times``, a ``StepTimes``, outside it); every rate problem is logged (throttled,
    ``log(level, text, key)``); the errors, joined, explain rejected updates and are
    returned with the statuses.
    """
    steps = step_times.values()
    with lock:
        problems = timeline.rate_problems()
        statuses = [inputs_status(timeline, stale_timeout, rate_problems=problems),
                    torque_status(timeline, steps)]
    stream_problem = '; '.join(text for level, text in problems if level == 'ERROR')
    for level, text in problems:
        log(level.lower().replace('warn', 'warning'), text, text[:30])
    statuses.append(identifier_status(dict(worker.stats), last_result, worker.dropped,
                                      stream_problem))
    return statuses, stream_problem


def identifier_status(stats, result, dropped, stream_problem=''):
    """Counters of the identifier process and its last update."""
    level = 'WARN' if stats['errors'] else 'OK'
    state = stats.get('state', 'ready')
    if not stats['enabled']:
        text = 'paused'
    elif state != 'ready':
        text = {'compiling': 'compiling (the torque path runs meanwhile)',
                'failed': 'failed to start (see the log)'}.get(state, state)
        level = 'ERROR' if state == 'failed' else level
    elif result is None and stats.get('session_archive_s', 0.0) > 0:
        text = (f'raw EMG: {stats["session_archive_s"]:.0f} s of data archived for the first '
                'session fit (the template meanwhile)')
    elif result is None:
        text = 'waiting for data'
    else:
        text = describe(result, stream_problem)
    values = dict(stats, queue_dropped=stats['queue_dropped'] + dropped,
                  loss=result.fit_cost if result else float('nan'),
                  holdout_loss=result.holdout_after if result else float('nan'),
                  update_s=result.seconds if result else float('nan'))
    return 'diffmsm: identifier', level, text, values


def update_line(result, stream_problem=''):
    """Give the log line of one identifier update."""
    kind = 'accepted' if result.accepted else 'rejected'
    return (f'update {kind} ({describe(result, stream_problem)}) at {result.data_time:.1f} s: '
            f'fit {result.fit_cost:.3g}, hold-out {result.holdout_before:.3g} -> '
            f'{result.holdout_after:.3g}, {result.seconds * 1e3:.0f} ms')


def describe(result, stream_problem=''):
    """Give an update's reason, with the input problem that explains a rejection."""
    reason = result.reason
    if result.session_seconds > 0:
        reason = f'session fit over {result.session_seconds:.0f} s of data: {reason}'
    if result.accepted or not stream_problem:
        return reason
    return f'{reason} ({stream_problem})'


def _offset_stats(offsets):
    """Receipt time minus EMG sample clock (ms): min, median, max of recent chunks."""
    values = np.asarray(offsets, dtype=float) * 1e3
    if not values.size:
        return {}
    return {'emg_receipt_lag_ms_min': float(values.min()),
            'emg_receipt_lag_ms_p50': float(np.median(values)),
            'emg_receipt_lag_ms_max': float(values.max())}


def _envelope_error_stats(envelope_filter):
    """Raw EMG: the envelope's random error (% RMS) the filter measures, over channels."""
    if envelope_filter is None:
        return {}
    error = 100 * envelope_filter.envelope_error
    known = error[np.isfinite(error)]
    if not known.size:
        return {'emg_envelope_error_pct_median': float('nan'),
                'emg_envelope_error_pct_max': float('nan')}
    return {'emg_envelope_error_pct_median': float(np.median(known)),
            'emg_envelope_error_pct_max': float(known.max())}
