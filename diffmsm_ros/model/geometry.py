"""
Muscle-tendon length as a smooth function of the joint angles it spans.

Each geometry block holds muscles that span the same joints (one or two).  Lengths are
tensor-product cubic Hermite splines on a uniform grid through exact values and exact
derivatives (for two joints also the mixed derivative), so moment arms R = dl/dq, taken by
autodiff, match the sampled ones at every grid node and stay C0 across wrapping kinks.
Outside the grid the spline is continued linearly with its boundary slope.
"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class GeometryBlock:
    """
    Spline tables for muscles spanning the same joints.

    ``tables[m, k, i0, (i1)]``: derivative k of muscle m's length at grid node i (m, m/rad);
    bit d of k set means "differentiated along spanned joint d".  ``start``/``step`` in rad.
    """

    start: jax.Array
    step: jax.Array
    tables: jax.Array
    joints: tuple = ()
    muscles: tuple = ()


jax.tree_util.register_dataclass(
    GeometryBlock, data_fields=['start', 'step', 'tables'], meta_fields=['joints', 'muscles'])


def _basis(t):
    """Cubic Hermite basis at t: value weights (node 0, node 1), slope weights (node 0, 1)."""
    t2 = t * t
    t3 = t2 * t
    value = (2 * t3 - 3 * t2 + 1, -2 * t3 + 3 * t2)
    slope = (t3 - 2 * t2 + t, t3 - t2)
    return value, slope


def _interior(block, x):
    """Spline value for each muscle of the block at joint coordinates x inside the grid."""
    dims = len(block.joints)
    tables = jnp.asarray(block.tables)
    shape = tables.shape[2:]
    index, weights = [], []
    for d in range(dims):
        u = (x[d] - block.start[d]) / block.step[d]
        i = jnp.clip(jnp.floor(u), 0, shape[d] - 2).astype(jnp.int32)
        index.append(i)
        weights.append(_basis(u - i))
    total = 0.0
    for corner in itertools.product((0, 1), repeat=dims):
        node = tuple(index[d] + corner[d] for d in range(dims))
        for k in range(2 ** dims):
            w = 1.0
            for d in range(dims):
                value_w, slope_w = weights[d]
                if (k >> d) & 1:
                    w = w * slope_w[corner[d]] * block.step[d]
                else:
                    w = w * value_w[corner[d]]
            total = total + w * tables[(slice(None), k) + node]
    return total


def block_lengths(block, q):
    """Muscle-tendon lengths (m) of the block's muscles at joint angles q (rad)."""
    x = jnp.stack([q[j] for j in block.joints])
    n = jnp.array(block.tables.shape[2:], dtype=x.dtype)
    lo = block.start
    hi = block.start + block.step * (n - 1)
    xc = jnp.clip(x, lo, hi)
    value, slope = jax.jvp(lambda y: _interior(block, y), (xc,), (x - xc,))
    return value + slope


def muscle_lengths(blocks, q, n_muscles):
    """All muscle-tendon lengths (m), ordered by muscle index."""
    out = jnp.zeros((n_muscles,), dtype=q.dtype)
    for block in blocks:
        out = out.at[jnp.array(block.muscles)].set(block_lengths(block, q))
    return out
