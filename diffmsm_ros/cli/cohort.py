"""
``diffmsm identify-batch``: many recorded sessions identified as Ray tasks.

Each session is one Ray task of one CPU that runs ``commands.identify_session``, the
pipeline of ``diffmsm identify``, and writes into ``OUT/<session>/``: ``report/`` first,
then ``model.yaml`` atomically (so a model file that loads marks a finished session), then
``session.json`` (the row's timing and attempts, and the core the task ran on: null if
unpinned).  Every attempt appends its worker's process id to
``attempts.log``.  The driver keeps a progress bar over the sessions and, at the end,
writes ``cohort.csv``, ``summary.md`` and ``strengths.png`` (``cohort_table``).

Failures: an error the pipeline raises (a corrupt bag, EMG that does not fit the
settings) is caught inside the task and returned as the session's ``failed`` row, so Ray
does not retry what would fail again; a worker process that dies mid-task (killed, out of
memory, a lost node) is retried by Ray up to ``--retries`` times.

Workers: a task holds one CPU, so it runs on one claimed core with one XLA thread
(``cpu_claim.one_core``: XLA's thread pool is sized by the cores a process may use when JAX
starts, and ``SINGLE_THREAD_XLA`` alone does not shrink it), and every worker uses the
driver's JAX caches (``jax_setup.cache_dir()``, that is ``DIFFMSM_JAX_CACHE``), so a batch
pays the compilation once per machine, not per session.

Ray is imported only when the command runs: it is an optional extra (``[cluster]``).
"""

import json
import os
import sys
import time
import traceback

from diffmsm_ros.cli import cohort_table, cpu_claim
from diffmsm_ros.cli.commands import identify_session, UserError

RAY_REQUIREMENT = 'ray==2.60.0'
INSTALL_HINT = ('identify-batch runs on Ray, which is not installed: pip install '
                f"'diffmsm_ros[cluster]' (or: pip install {RAY_REQUIREMENT}, as in "
                'requirements-cluster.txt)')
MODEL, ROW, ATTEMPTS, REPORT, ERROR = ('model.yaml', 'session.json', 'attempts.log', 'report',
                                       'error.txt')


def worker_env(cache=None):
    """Environment of the worker processes: one XLA thread, the shared JAX caches, CPU."""
    from diffmsm_ros.jax_setup import cache_dir, SINGLE_THREAD_XLA
    flags = os.environ.get('XLA_FLAGS', '')
    return {'XLA_FLAGS': f'{flags} {SINGLE_THREAD_XLA}'.strip(),
            'DIFFMSM_JAX_CACHE': cache_dir() if cache is None else cache,
            'JAX_PLATFORMS': os.environ.get('JAX_PLATFORMS') or 'cpu',
            'OMP_NUM_THREADS': '1'}


def complete_row(session, subject, bag, folder):
    """Return the row of a session whose model file exists and loads, else None."""
    from diffmsm_ros.files import modelfile
    path = os.path.join(folder, MODEL)
    if not os.path.isfile(path):
        return None
    try:
        sf = modelfile.load(path)
    except modelfile.ModelFileError:
        return None
    saved = {}
    try:
        with open(os.path.join(folder, ROW), encoding='utf-8') as fh:
            saved = json.load(fh)
    except (OSError, ValueError):
        pass
    return cohort_table.row_of(session, subject, bag, cohort_table.SKIPPED, sf,
                               saved.get('duration_s'), saved.get('identify_s'), 'complete',
                               saved.get('attempts'))


def run_session(job):
    """
    Identify one session (the body of a Ray task); return its table row.

    ``job`` holds session, subject, bag, folder, template and params_file.  Errors the
    pipeline raises become a ``failed`` row (with ``error.txt`` beside it): retrying them
    would fail again.
    """
    folder = job['folder']
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ATTEMPTS), 'a', encoding='utf-8') as fh:
        fh.write(f'{os.getpid()}\n')
    with open(os.path.join(folder, ATTEMPTS), encoding='utf-8') as fh:
        attempts = len(fh.read().split())
    name, subject, bag = job['session'], job['subject'], job['bag']
    try:
        with cpu_claim.one_core() as core:
            done = identify_session(bag, os.path.join(folder, MODEL), job['template'],
                                    job['params_file'], report=os.path.join(folder, REPORT))
    except Exception as err:  # noqa: B902 - any failure of one session is its row's reason
        reason = str(err) if isinstance(err, UserError) else f'{type(err).__name__}: {err}'
        with open(os.path.join(folder, ERROR), 'w', encoding='utf-8') as fh:
            fh.write(traceback.format_exc())
        return cohort_table.row_of(name, subject, bag, cohort_table.FAILED,
                                   reason=' '.join(reason.split()), attempts=attempts)
    row = cohort_table.row_of(name, subject, bag, cohort_table.OK, done.subject, done.duration,
                              done.elapsed, attempts=attempts)
    with open(os.path.join(folder, ROW), 'w', encoding='utf-8') as fh:
        json.dump({'duration_s': done.duration, 'identify_s': done.elapsed,
                   'attempts': attempts, 'core': core}, fh)
    return row


def connect(ray, address, workers):
    """Join a running Ray (``address``) or start a local one; True if this call started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')
    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
             log_to_driver=False)
    return True


def identify_batch(args):
    """Identify every session of ``args.bags`` on Ray; write the cohort table into ``args.out``."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    from tqdm import tqdm
    try:
        manifest = cohort_table.read_manifest(args.manifest) if args.manifest else None
        sessions = cohort_table.plan(args.bags, manifest)
    except cohort_table.CohortError as err:
        raise UserError(str(err)) from None
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    started = time.monotonic()
    rows, jobs = {}, []
    for name, subject, bag in sessions:
        folder = os.path.join(out, name)
        row = complete_row(name, subject, bag, folder)
        if row is not None:
            rows[name] = row
        else:
            jobs.append({'session': name, 'subject': subject, 'bag': os.path.abspath(bag),
                         'folder': folder, 'template': args.template,
                         'params_file': args.params_file and os.path.abspath(args.params_file)})
    started_ray = False
    if jobs:
        started_ray = connect(ray, args.address, args.workers)
    try:
        if jobs:
            task = ray.remote(num_cpus=1, max_retries=args.retries,
                              retry_exceptions=False)(run_session)
            task = task.options(runtime_env={'env_vars': worker_env()})
            pending = {task.remote(job): job for job in jobs}
            with tqdm(total=len(sessions), initial=len(rows), unit='session', desc='sessions',
                      disable=args.quiet, file=sys.stderr) as bar:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    job = pending.pop(ready[0])
                    rows[job['session']] = collect(ray, ready[0], job)
                    bar.update(1)
                    bar.set_postfix_str(f'{job["session"]}: '
                                        f'{cohort_table.status_text(rows[job["session"]])}'[:60],
                                        refresh=False)
    finally:
        if started_ray:
            ray.shutdown()
    table = [rows[name] for name, _, _ in sessions]
    notes = [f'batch of {len(table)} sessions in {time.monotonic() - started:.1f} s, '
             f'{len(jobs)} run as Ray tasks']
    paths = [cohort_table.write_csv(os.path.join(out, 'cohort.csv'), table),
             cohort_table.write_summary(os.path.join(out, 'summary.md'), table, notes)]
    plot = cohort_table.plot_strengths(os.path.join(out, 'strengths.png'), table)
    paths += [plot] if plot else []
    for row in table:
        print(f'{row["session"]:24s} {row["subject"]:12s} {cohort_table.status_text(row)}')
    print(f'{notes[0]}; wrote {", ".join(paths)}')
    return 0 if all(r['status'] != cohort_table.FAILED for r in table) else 1


def collect(ray, ref, job):
    """Return a finished task's row; a task Ray gave up on (worker lost) becomes a failed one."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        reason = ' '.join(str(err).split())[:300]
        return cohort_table.row_of(job['session'], job['subject'], job['bag'],
                                   cohort_table.FAILED,
                                   reason=f'{type(err).__name__}: {reason}')
