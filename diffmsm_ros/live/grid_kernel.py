"""
The torque path's excitation-grid bookkeeping as numba kernels: the numbers of its numpy form.

``TorquePath`` keeps the excitations on the model's grid in a ring of rows.  Two jobs run
for every EMG chunk or encoder sample: writing a chunk's samples onto grid rows (linear
interpolation, ``TorquePath._resample``) and copying the rows one call reads, with the
rows not yet final held or carried on their last slope (``TorquePath._fill_rows``).  In
numpy each is a dozen small-array calls; amid the node's other work (the CPU caches
cold) they took 74 us (a chunk) and 21 us (a call) p50, measured in one process on the
``bench/latency`` stream.  Here each is one native function.

Both follow their numpy form operation for operation; ``test/core/test_torque_kernel.py``
holds them to it.  Without numba (``torque_kernel.available()`` False) the torque path
keeps the numpy form.
"""

from diffmsm_ros.live.torque_kernel import native


def resample(prev_t, prev_e, has_prev, times, e, k_first, k_last, h, on_grid, ring):
    """
    Write grid rows ``k_first..k_last`` (ring row k % len) from samples at ``times``.

    The samples are ``(prev_t, prev_e)`` (the newest earlier one, where ``has_prev``) and
    ``times`` [S], ``e`` [S, nm].  A row at t_k = k h is linearly interpolated between the
    samples around it (the first sample at or after t_k, less ``on_grid`` steps, and the
    one before), clamped to the first and last pair; one sample alone is held.
    """
    offset = 1 if has_prev else 0
    n = len(times) + offset
    nm = ring.shape[1]
    size = ring.shape[0]
    hi = max(1, n - 1)
    j = 0
    for k in range(k_first, k_last + 1):
        tk = k * h
        x = tk - on_grid * h
        while j < n and _time(prev_t, times, offset, j) < x:
            j += 1
        row = k % size
        if n == 1:
            for m in range(nm):
                ring[row, m] = _value(prev_e, e, offset, 0, m)
            continue
        i = min(max(j, 1), hi)
        t0 = _time(prev_t, times, offset, i - 1)
        t1 = _time(prev_t, times, offset, i)
        w = min(max((tk - t0) / (t1 - t0), 0.0), 1.0)
        for m in range(nm):
            ring[row, m] = (1.0 - w) * _value(prev_e, e, offset, i - 1, m) \
                + w * _value(prev_e, e, offset, i, m)


def _time(prev_t, times, offset, i):
    return prev_t if i < offset else times[i - offset]


def _value(prev_e, e, offset, i, m):
    return prev_e[m] if i < offset else e[i - offset, m]


def fill_rows(ring, start, first, final, last_e, last_t, h, slope_rows, ahead_limit, rows):
    """
    Write ``rows`` [count, nm] with the grid rows from step ``start`` (``_fill_rows``).

    Rows up to ``final`` come from the ring; later ones hold ``last_e`` (the newest sample,
    at ``last_t``), carried on the slope from the row ``slope_rows`` before ``final`` for up
    to ``ahead_limit`` s once more than ``slope_rows`` rows are known; rows before ``first``
    + 1 repeat the first row written after them.
    """
    count, nm = rows.shape
    size = ring.shape[0]
    ahead = max(0, final + 1 - start)
    for i in range(min(ahead, count)):
        src = (start + i) % size
        for m in range(nm):
            rows[i, m] = ring[src, m]
    if ahead < count:
        sloped = final - first > slope_rows
        back = final - slope_rows
        for m in range(nm):
            slope = (last_e[m] - ring[back % size, m]) / (last_t - back * h) if sloped else 0.0
            for i in range(ahead, count):
                if sloped:
                    dt = min(max((start + i) * h - last_t, 0.0), ahead_limit)
                    rows[i, m] = last_e[m] + dt * slope
                else:
                    rows[i, m] = last_e[m]
    early = min(count, first + 1 - start)
    if early > 0:
        for i in range(early):
            for m in range(nm):
                rows[i, m] = rows[early, m] if early < count else last_e[m]


_time = native(_time)
_value = native(_value)
resample = native(resample)
fill_rows = native(fill_rows)
