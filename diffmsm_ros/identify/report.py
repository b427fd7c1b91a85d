"""
Identification report: PNG plots and a summary table.

- ``angle.png``: measured joint angle against the identified model simulated from the
  measured state every second (open loop within each second);
- ``torque.png``: predicted net muscle torque of the template and of the identified model;
- ``parameters.png``: muscle parameters over the session (% of template) with 1-sigma bands;
- ``trajectory.csv``: every update over the session (time, outcome, each parameter and
  its 1-sigma), the numbers behind ``parameters.png``;
- ``summary.md``: template, identified value, 1-sigma (and truth and error if given).
"""

import csv
import os

from diffmsm_ros.identify import excitation
from diffmsm_ros.model import dynamics, integrators
from diffmsm_ros.model.dynamics import Inputs, State
import jax
import jax.numpy as jnp
import numpy as np


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def simulate_segments(model, win, seconds=1.0):
    """Angles simulated from the measured state every ``seconds``, [T, nq]."""
    h = win.h
    k = max(2, int(round(seconds / h)))
    n = (win.length - 1) // k
    win = jax.tree_util.tree_map(jnp.asarray, win)
    u = excitation.excitations(model, win)
    a = excitation.activations(model, u, h)

    def seg(s):
        idx = s * k
        st = State(win.q[idx], win.qd[idx], a[idx])
        uu = jax.lax.dynamic_slice_in_dim(u, idx, k)
        tt = jax.lax.dynamic_slice_in_dim(win.tau_exo, idx, k)
        return integrators.rollout(model, st, Inputs(uu, tt)).q

    q = jax.jit(jax.vmap(seg))(jnp.arange(n))
    out = np.full(np.asarray(win.q).shape, np.nan)
    out[1:n * k + 1] = np.asarray(q).reshape(n * k, -1)
    return out


def muscle_torque_series(model, win):
    """Net muscle torque [T, nq] along the measured motion (N m)."""
    u = excitation.excitations(model, win)
    a = excitation.activations(model, u, win.h)
    return np.asarray(jax.jit(jax.vmap(lambda q, qd, ak: dynamics.muscle_torque(
        model, q, qd, ak)))(win.q, win.qd, a))


def summary_rows(space, template_theta, theta, std, truth_theta=None):
    rows = []
    for k, label in enumerate(space.labels()):
        row = {'parameter': label, 'template': template_theta[k], 'identified': theta[k],
               'std': std[k] if std is not None else float('nan')}
        if truth_theta is not None:
            row['truth'] = truth_theta[k]
            row['error_percent'] = 100.0 * (theta[k] - truth_theta[k]) / abs(truth_theta[k])
        rows.append(row)
    return rows


def write_summary(path, rows, notes):
    cols = list(rows[0].keys())
    lines = ['# Identification summary', '']
    lines += [f'- {n}' for n in notes]
    lines += ['', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        cells = [r[c] if isinstance(r[c], str) else f'{r[c]:.6g}' for c in cols]
        lines.append('| ' + ' | '.join(cells) + ' |')
    with open(path, 'w', encoding='utf-8') as fh:
        fh.write('\n'.join(lines) + '\n')


def write_trajectory(path, history, space):
    """Write the history as CSV: one row per update, each parameter and its 1-sigma."""
    labels = space.labels()
    with open(path, 'w', encoding='utf-8', newline='') as fh:
        out = csv.writer(fh)
        out.writerow(['time_s', 'accepted', 'reason']
                     + list(labels) + [f'{label} std' for label in labels])
        for k, when in enumerate(history.time):
            std = history.std[k]
            sd = [''] * len(labels) if std is None else [f'{v:.6g}' for v in std]
            out.writerow([f'{when:.3f}', int(bool(history.accepted[k])), history.reason[k]]
                         + [f'{v:.6g}' for v in history.theta[k]] + sd)


def _save(fig, axes, folder, name):
    """Label the time axis, save the figure as folder/name (PNG) and close it."""
    import matplotlib.pyplot as plt
    axes[-1, 0].set_xlabel('session time (s)')
    fig.tight_layout()
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(folder, template_model, model, win, grid, history, space, std, notes,
                 truth_theta=None):
    """Write the plots and summary.md into ``folder``; returns the file paths."""
    plt = _plt()
    os.makedirs(folder, exist_ok=True)
    t = grid - grid[0]
    names = model.joint_names
    paths = []

    sim = simulate_segments(model, win)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 3 * len(names)), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[j, 0]
        ax.plot(t, np.asarray(win.q)[:, j], 'k', lw=1.2, label='measured')
        ax.plot(t, sim[:, j], 'C1', lw=0.8, label='identified model (restarted every 1 s)')
        ax.set_ylabel(f'{name} (rad)')
        ax.legend(loc='upper right')
    paths.append(_save(fig, axes, folder, 'angle.png'))

    tau_t = muscle_torque_series(template_model, win)
    tau_i = muscle_torque_series(model, win)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 3 * len(names)), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[j, 0]
        ax.plot(t, tau_t[:, j], 'C0', lw=0.8, label='template')
        ax.plot(t, tau_i[:, j], 'C3', lw=0.8, label='identified')
        ax.plot(t, np.asarray(win.tau_exo)[:, j], 'k:', lw=0.8, label='exoskeleton (measured)')
        ax.set_ylabel(f'{name} torque (N m)')
        ax.legend(loc='upper right')
    paths.append(_save(fig, axes, folder, 'torque.png'))

    fields = ['max_isometric_force', 'optimal_fiber_length', 'tendon_slack_length']
    fig, axes = plt.subplots(len(fields), 1, figsize=(10, 3 * len(fields)), squeeze=False)
    times = np.asarray(history.time)
    thetas = np.array(history.theta) if history.theta else np.zeros((0, space.size))
    ref = np.asarray(space.from_z(np.zeros(space.size)))
    for f, field in enumerate(fields):
        ax = axes[f, 0]
        for k, e in enumerate(space.entries):
            if e.field != field or not len(times):
                continue
            rel = 100.0 * (thetas[:, k] / ref[k] - 1.0)
            line, = ax.plot(times, rel, lw=1.0, label=e.name)
            sd = np.array([np.nan if s is None else s[k] for s in history.std])
            band = 100.0 * sd / abs(ref[k])
            ax.fill_between(times, rel - band, rel + band, color=line.get_color(), alpha=0.2)
            if truth_theta is not None:
                ax.axhline(100.0 * (truth_theta[k] / ref[k] - 1.0), color=line.get_color(),
                           ls='--', lw=0.8)
        ax.set_ylabel(f'{field}\n(% of template)')
        ax.legend(loc='upper right', fontsize=7, ncol=3)
    paths.append(_save(fig, axes, folder, 'parameters.png'))
    paths.append(os.path.join(folder, 'trajectory.csv'))
    write_trajectory(paths[-1], history, space)

    theta = np.asarray(space.from_z(space.to_z(_values(model, space))))
    rows = summary_rows(space, ref, theta, std, truth_theta)
    paths.append(os.path.join(folder, 'summary.md'))
    write_summary(paths[-1], rows, notes)
    return paths


def _values(model, space):
    from diffmsm_ros.identify import params
    return params.values(model, space)
