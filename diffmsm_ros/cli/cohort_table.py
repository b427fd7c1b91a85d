"""
The cohort table of ``diffmsm identify-batch``: sessions, subjects, rows, CSV, summary, plot.

Nothing here imports Ray: the rows are plain dicts, so the table is written (and tested)
the same way whether the sessions ran on a cluster or were found complete on disk.

Naming rule: a session is named after its bag folder, or after the folder holding it when
the bag is called ``bag`` (as ``diffmsm simulate --out DIR`` writes ``DIR/bag``).  Its
subject is the part of the session name before the first ``_`` (``P07_2026-03-02`` ->
``P07``; a name without ``_`` is its own subject), unless a manifest CSV with the columns
``session,subject`` names it.
"""

import csv
import os

STRENGTH = 'max_isometric_force'
OK, FAILED, SKIPPED = 'ok', 'failed', 'skipped'


class CohortError(ValueError):
    """Sessions that cannot make one table (duplicate names, a bad manifest)."""


def session_name(bag):
    """Name a session after its bag folder (or the folder above a bag called ``bag``)."""
    path = os.path.normpath(os.path.abspath(os.fspath(bag)))
    base = os.path.basename(path)
    stem = os.path.splitext(base)[0] if os.path.isfile(path) else base
    if stem == 'bag':
        return os.path.basename(os.path.dirname(path))
    return stem


def subject_of(session):
    """Return the subject of a session by the naming rule: the name up to the first ``_``."""
    return session.split('_', 1)[0]


def read_manifest(path):
    """Read ``{session: subject}`` from a CSV file with the columns ``session`` and ``subject``."""
    try:
        with open(path, newline='', encoding='utf-8') as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {'session', 'subject'} <= set(reader.fieldnames):
                raise CohortError(f'{path}: the manifest needs the columns session,subject '
                                  f'(found {reader.fieldnames})')
            return {row['session'].strip(): row['subject'].strip() for row in reader
                    if row['session'] and row['session'].strip()}
    except OSError as err:
        raise CohortError(f'{path}: cannot read the manifest ({err.strerror})') from None


def plan(bags, manifest=None):
    """Return ``[(session, subject, bag)]`` in the given order; names must be unique."""
    out, seen = [], {}
    for bag in bags:
        name = session_name(bag)
        if name in seen:
            raise CohortError(f'two bags make the session {name!r}: {seen[name]} and {bag} '
                              '(sessions are named after their folder)')
        seen[name] = bag
        subject = (manifest or {}).get(name) or subject_of(name)
        out.append((name, subject, os.fspath(bag)))
    return out


def row_of(session, subject, bag, status, sf=None, duration=None, seconds=None, reason='',
           attempts=None):
    """
    Build one table row (a plain dict) from a session's outcome.

    ``sf`` is the identified SubjectFile (None for a failed session): the row takes each
    muscle's max_isometric_force (N) and its 1-sigma, the fit residual (RMS, in units of
    the measurement noise) and the warnings from it.
    """
    row = {'session': session, 'subject': subject, 'bag': bag, 'status': status,
           'reason': reason, 'duration_s': duration, 'identify_s': seconds,
           'attempts': attempts, 'fit_residual': None, 'warnings': [], 'strengths': {}}
    if sf is not None:
        model = sf.model
        forces = getattr(model.muscles, STRENGTH)
        std = sf.std.get('muscles', {})
        for k, name in enumerate(model.muscle_names):
            sigma = std.get(name, {}).get(STRENGTH)
            row['strengths'][name] = (float(forces[k]), None if sigma is None else float(sigma))
        ident = sf.identification or {}
        if ident.get('residual_rms') is not None:
            row['fit_residual'] = float(ident['residual_rms'])
        row['warnings'] = [str(w) for w in ident.get('warnings', [])]
    return row


def status_text(row):
    """``ok``, ``failed: reason`` or ``skipped: complete``."""
    return f'{row["status"]}: {row["reason"]}' if row['reason'] else row['status']


def muscles_of(rows):
    """Muscle names over all rows, in order of first appearance."""
    names = []
    for row in rows:
        names += [m for m in row['strengths'] if m not in names]
    return names


def _number(value, digits):
    return '' if value is None else f'{value:.{digits}g}'


def columns(rows):
    """Return the CSV header for these rows."""
    head = ['session', 'subject', 'status', 'duration_s', 'identify_s', 'fit_residual']
    for name in muscles_of(rows):
        head += [f'{name}.{STRENGTH}', f'{name}.{STRENGTH}.std']
    return head + ['warnings', 'bag']


def csv_values(row, muscles):
    """Return one row's CSV fields, in the order of ``columns``."""
    out = [row['session'], row['subject'], status_text(row), _number(row['duration_s'], 6),
           _number(row['identify_s'], 4), _number(row['fit_residual'], 6)]
    for name in muscles:
        value, sigma = row['strengths'].get(name, (None, None))
        out += [_number(value, 12), _number(sigma, 6)]
    return out + ['; '.join(row['warnings']), row['bag']]


def write_csv(path, rows):
    """Write ``cohort.csv``: one line per session, strengths in N and their 1-sigma."""
    muscles = muscles_of(rows)
    tmp = f'{path}.tmp'
    with open(tmp, 'w', newline='', encoding='utf-8') as fh:
        writer = csv.writer(fh)
        writer.writerow(columns(rows))
        for row in rows:
            writer.writerow(csv_values(row, muscles))
    os.replace(tmp, path)
    return path


def write_summary(path, rows, notes=()):
    """Write ``summary.md``: counts, then a table of every session (strengths as F0 +- 1-sigma)."""
    muscles = muscles_of(rows)
    counts = {s: sum(r['status'] == s for r in rows) for s in (OK, SKIPPED, FAILED)}
    lines = ['# Cohort identification', '',
             f'{len(rows)} sessions of {len({r["subject"] for r in rows})} subjects: '
             f'{counts[OK]} identified, {counts[SKIPPED]} already complete, '
             f'{counts[FAILED]} failed.', '']
    lines += [f'- {note}' for note in notes]
    if notes:
        lines.append('')
    lines.append('Strength: max_isometric_force (N) +- 1-sigma.  Fit residual: RMS of the '
                 'data residual in units of the measurement noise.')
    lines.append('')
    head = ['session', 'subject', 'status', 'duration (s)', 'fit residual'] + muscles
    lines.append('| ' + ' | '.join(head) + ' | warnings |')
    lines.append('|' + '---|' * (len(head) + 1))
    for row in rows:
        cells = [row['session'], row['subject'], status_text(row).replace('|', '/'),
                 _number(row['duration_s'], 4), _number(row['fit_residual'], 3)]
        for name in muscles:
            value, sigma = row['strengths'].get(name, (None, None))
            cells.append('' if value is None else f'{value:.1f}'
                         + ('' if sigma is None else f' +- {sigma:.2g}'))
        cells.append('; '.join(row['warnings']).replace('|', '/'))
        lines.append('| ' + ' | '.join(cells) + ' |')
    with open(path, 'w', encoding='utf-8') as fh:
        fh.write('\n'.join(lines) + '\n')
    return path


def plot_strengths(path, rows):
    """Plot each subject's strengths across its sessions (1-sigma error bars); None if none."""
    done = [r for r in rows if r['strengths']]
    if not done:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    subjects = list(dict.fromkeys(r['subject'] for r in done))
    muscles = muscles_of(done)
    fig, axes = plt.subplots(len(subjects), 1, figsize=(9, 3 * len(subjects)), squeeze=False)
    for ax, subject in zip(axes[:, 0], subjects):
        mine = [r for r in done if r['subject'] == subject]
        x = list(range(len(mine)))
        for k, name in enumerate(muscles):
            pairs = [r['strengths'].get(name, (None, None)) for r in mine]
            ys = [float('nan') if v is None else v for v, _ in pairs]
            es = [0.0 if s is None else s for _, s in pairs]
            ax.errorbar([i + 0.04 * (k - len(muscles) / 2) for i in x], ys, yerr=es,
                        marker='o', ms=3, capsize=3, lw=0.8, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels([r['session'] for r in mine], rotation=20, fontsize=8)
        ax.set_title(f'subject {subject}')
        ax.set_ylabel('max isometric force (N)')
        ax.legend(fontsize=7, ncol=3, loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
