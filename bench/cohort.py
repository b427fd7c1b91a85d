"""
Cohort identification on Ray: 8 sessions of 60 s through 1 and 2 local workers.

The sessions (our simulator, the elbow, 10 % spread, one seed each) are simulated once into
``--work`` (kept, so a second run reuses them).  Each is then identified three ways, every
time from scratch into a fresh folder, with the JAX caches warm:

- sequentially, one ``diffmsm identify --report`` process after the other (as a user would
  without a cluster; XLA on all cores; the report as a batch task writes one);
- ``diffmsm identify-batch --workers 1`` and ``--workers 2`` (a local Ray instance; each
  task on a core of its own with one XLA thread, ``cli/cpu_claim.py``).

Printed: wall time, time per session, and the speed-up of 2 workers over 1 (goal >= 1.7x
on this 2-core machine; the script exits 1 when it is missed).

    python bench/cohort.py [--sessions 8] [--duration 60] [--work /tmp/diffmsm_cohort]
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')
GOAL = 1.7


def diffmsm(*args):
    """Run the command line; return its wall time (s), failing loudly on an error."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, '-m', 'diffmsm_ros.cli.main', *map(str, args)],
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f'diffmsm {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}')
    return seconds


def simulate(work, count, duration):
    """Write (or find) ``count`` sessions; return their bag paths."""
    from diffmsm_ros.jax_setup import configure
    configure()
    from diffmsm_ros import templates
    from diffmsm_ros.session import record
    elbow = templates.resolve('elbow')
    bags = []
    for k in range(count):
        folder = os.path.join(work, 'sessions', f'S{k:02d}_{duration:g}s')
        bag = os.path.join(folder, 'bag')
        if not os.path.isfile(os.path.join(bag, 'metadata.yaml')):
            shutil.rmtree(folder, ignore_errors=True)
            record.record(elbow, folder, duration, seed=k, perturb=0.1)
        bags.append(bag)
    return bags


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--sessions', type=int, default=8)
    parser.add_argument('--duration', type=float, default=60.0, help='s per session')
    parser.add_argument('--work', default='/tmp/diffmsm_cohort')
    args = parser.parse_args()
    bags = simulate(args.work, args.sessions, args.duration)
    params = os.path.join(os.path.dirname(bags[0]), 'params.yaml')
    runs = os.path.join(args.work, 'runs')
    shutil.rmtree(runs, ignore_errors=True)
    os.makedirs(runs)
    # warm the caches of both XLA settings with one session first (not timed)
    diffmsm('identify', bags[0], '--out', os.path.join(runs, 'warm.yaml'), '--quiet',
            '--params-file', params)
    diffmsm('identify-batch', bags[0], '--out', os.path.join(runs, 'warm'), '--workers', 1,
            '--quiet', '--params-file', params)
    rows = []
    started = time.monotonic()
    for k, bag in enumerate(bags):
        diffmsm('identify', bag, '--out', os.path.join(runs, f'sequential_{k}.yaml'),
                '--report', os.path.join(runs, f'sequential_{k}_report'), '--quiet',
                '--params-file', params)
    rows.append(('sequential diffmsm identify', time.monotonic() - started))
    for workers in (1, 2):
        seconds = diffmsm('identify-batch', *bags, '--out',
                          os.path.join(runs, f'workers_{workers}'), '--workers', workers,
                          '--quiet', '--params-file', params)
        rows.append((f'identify-batch, {workers} worker(s)', seconds))
    count = len(bags)
    print(f'{count} sessions of {args.duration:g} s (elbow, our simulator), '
          f'{os.cpu_count()} CPUs')
    print(f'{"run":32s} {"wall (s)":>9s} {"per session (s)":>16s} {"vs sequential":>14s}')
    for name, seconds in rows:
        print(f'{name:32s} {seconds:9.1f} {seconds / count:16.1f} '
              f'{rows[0][1] / seconds:13.2f}x')
    speedup = rows[1][1] / rows[2][1]
    print(f'speed-up of 2 workers over 1: {speedup:.2f}x (goal >= {GOAL}x): '
          f'{"met" if speedup >= GOAL else "MISSED"}')
    return 0 if speedup >= GOAL else 1


if __name__ == '__main__':
    sys.exit(main())
