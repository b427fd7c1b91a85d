"""
What the node and its identifier process say to each other: one typed vocabulary.

To the identifier (``IdentifierProcess`` sends lists of them, the child hands each to its
``IdentifierWorker``, which takes the same commands from any thread):

- data: ``Encoders`` (rows of samples) and ``Excitations`` (rows of excitations, with raw
  EMG's noise density when measured);
- commands: ``Reset``, ``Enable``, ``Period``, ``Iterations``, ``Stop``.

From the identifier: ``Ready``, ``Result``, ``Model``, ``Stats``, ``Log``, ``Failed``,
``Stopped``.  Every message that follows a change carries the worker's counters
(``stats``), which the node shows on ``/diagnostics``.
"""

import dataclasses
import typing

import numpy as np


# ---------------------------------------------------------------------- to the identifier
@dataclasses.dataclass(frozen=True)
class Encoders:
    """Encoder samples, one row each: [t s, q rad, qd rad/s (NaN: not sent), tau N m]."""

    rows: np.ndarray

    @staticmethod
    def row(t, q, qd, tau):
        """Return the row of one sample (qd None: not sent)."""
        nq = len(q)
        out = np.empty(1 + 3 * nq)
        out[0] = t
        out[1:1 + nq] = q
        out[1 + nq:1 + 2 * nq] = np.nan if qd is None else qd
        out[1 + 2 * nq:] = tau
        return out

    def samples(self):
        """Yield (t, q, qd or None, tau) of each row."""
        nq = (self.rows.shape[1] - 1) // 3
        for row in self.rows:
            qd = row[1 + nq:1 + 2 * nq]
            yield row[0], row[1:1 + nq], None if np.all(np.isnan(qd)) else qd, \
                row[1 + 2 * nq:]


@dataclasses.dataclass(frozen=True)
class Excitations:
    """Excitations, one row each: [t s, u per muscle]; ``noise``: S0 per muscle, or None."""

    rows: np.ndarray
    noise: typing.Optional[np.ndarray] = None

    @staticmethod
    def rows_of(t, u):
        """Return the rows of excitations u [S, nm] at times t [S] (s)."""
        return np.column_stack([np.asarray(t, dtype=float), np.asarray(u, dtype=float)])

    @property
    def times(self):
        return self.rows[:, 0]

    @property
    def values(self):
        return self.rows[:, 1:]


@dataclasses.dataclass(frozen=True)
class Reset:
    """Back to the template, data cleared."""


@dataclasses.dataclass(frozen=True)
class Enable:
    """Resume (True) or pause (False) updates."""

    enabled: bool


@dataclasses.dataclass(frozen=True)
class Period:
    """Seconds of data between online updates."""

    seconds: float


@dataclasses.dataclass(frozen=True)
class Iterations:
    """Solver iterations per online update."""

    count: int


@dataclasses.dataclass(frozen=True)
class Stop:
    """Finish an update in flight and end."""


# ---------------------------------------------------------------------- from the identifier
@dataclasses.dataclass(frozen=True)
class Ready:
    """The child compiled and takes data."""

    stats: dict


@dataclasses.dataclass(frozen=True)
class Result:
    """An update's or session fit's result (``UpdateResult`` fields)."""

    fields: dict
    stats: dict


@dataclasses.dataclass(frozen=True)
class Model:
    """An accepted model: its pytree and its model-file text."""

    model: typing.Any
    text: str
    stats: dict


@dataclasses.dataclass(frozen=True)
class Stats:
    """The worker's counters (every half second)."""

    stats: dict


@dataclasses.dataclass(frozen=True)
class Log:
    """A line for the node's log (an error in the identifier)."""

    text: str


@dataclasses.dataclass(frozen=True)
class Failed:
    """The child failed; ``text`` is its traceback."""

    text: str


@dataclasses.dataclass(frozen=True)
class Stopped:
    """The child ended after ``Stop``."""
