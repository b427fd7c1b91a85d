"""
The torque path's handling time per encoder sample: recent percentiles and session counts.

The node times each sample from taking its message to publishing its torque.  The recent
``RECENT`` times give the percentiles on ``/diagnostics``; counts of the samples slower
than each of ``EDGES_MS`` cover the whole session, so a tail is judged over every sample
(``bench/latency.py``), not over the last few seconds.  Given the handling thread's CPU
time too, it counts the slow samples whose thread was also that long on the CPU: the
others were slow waiting (another thread holding the GIL, another process or the host
on the core), not working.
"""

import numpy as np

EDGES_MS = (0.5, 1.0, 2.0, 5.0)     # ms: the session counts of slower samples
RECENT = 2000                       # times kept for the percentiles


class StepTimes:
    """Handling times (s) added one per sample; ``values()`` for the diagnostics."""

    def __init__(self, recent=RECENT):
        self.ring = np.zeros(recent)
        self.count = 0                      # samples timed since start
        self.over = [0] * len(EDGES_MS)     # of them, slower than each edge
        self.working = [0] * len(EDGES_MS)  # of those, as long on the CPU too

    def add(self, seconds, cpu_seconds=None):
        """Count one sample handled in ``seconds`` (wall), its thread ``cpu_seconds`` on CPU."""
        self.ring[self.count % len(self.ring)] = seconds
        self.count += 1
        ms = seconds * 1e3
        cpu_ms = ms if cpu_seconds is None else cpu_seconds * 1e3
        for k, edge in enumerate(EDGES_MS):
            if ms <= edge:
                break
            self.over[k] += 1
            self.working[k] += int(cpu_ms > edge)

    def values(self):
        """p50 / p99 / max (ms) of the recent times, and the session counts."""
        n = min(self.count, len(self.ring))
        recent = self.ring[:n] * 1e3
        pct = (np.percentile(recent, [50, 99]).tolist() + [float(recent.max())]) if n \
            else [float('nan')] * 3
        out = dict(zip(('step_ms_p50', 'step_ms_p99', 'step_ms_max'), pct))
        out['steps'] = self.count
        for edge, over, working in zip(EDGES_MS, self.over, self.working):
            out[f'steps_over_{edge:g}ms'] = over
            out[f'steps_over_{edge:g}ms_on_cpu'] = working
        return out
