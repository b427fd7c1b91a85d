"""
Raw EMG, live: the corrected fit over the session so far (a "session fit").

On raw EMG the online updates' shooting fit is biased: the envelope's error is noise in
the regressors (``corrected``), and each window adds the same bias, so more data do not
help (a 15-minute live session ended 18.7 % off after 12.6 % at one minute).  The
corrected equation-error fit removes that bias but needs many windows at once.  So the
online identifier archives the session's data as windows of its chunk shape, and now and
then the corrected fit runs over the archive, from the template (``Problem.corrected_fit``,
the offline final fit); its result replaces the model when it predicts the data that
arrived while it ran no worse than the template does (``OnlineIdentifier.adopt_session``).
The online updates do not run meanwhile: the template stays until the first one.

The archive is bounded: past ``ARCHIVE_WINDOWS`` windows every other one is dropped and
only every second chunk is kept from then on (twice the stride each time), so memory and
the fit's compute stay bounded over a session of any length, while the windows kept still
span it evenly.  A session fit is due after ``FIRST`` s of archived data and again each
time the session's data have grown by ``GROWTH`` since the last one started.
"""

import dataclasses

FIRST = 120.0           # s of session data before the first session fit
GROWTH = 1.5            # the session's data grow this much before the next one
ARCHIVE_WINDOWS = 160   # windows kept (with the default 4.5 s chunk: 12 min of data)
HELD_OUT = 2            # fewest windows of held-out data a session fit is checked on
TRACKED_MARGIN = 1.05   # a later one may fit them this much worse than the tracked model


@dataclasses.dataclass
class SessionArchive:
    """The session's data as windows of one shape, every ``stride``-th chunk kept."""

    span: float                      # s of session data one chunk covers
    limit: int = ARCHIVE_WINDOWS
    entries: list = dataclasses.field(default_factory=list)   # (chunk index, Window)
    stride: int = 1
    chunks: int = 0                  # chunks of the session seen (kept or not)
    last_fit: float = 0.0            # session seconds when the last session fit started

    def add(self, win):
        """Add the session's next chunk (kept if it falls on the stride)."""
        if self.chunks % self.stride == 0:
            self.entries.append((self.chunks, win))
            if len(self.entries) > self.limit:
                self.entries = self.entries[::2]
                self.stride *= 2
        self.chunks += 1

    @property
    def windows(self):
        return [win for _, win in self.entries]

    @property
    def seconds(self):
        """Return the session data (s) the archive spans."""
        return self.chunks * self.span

    def due(self):
        """Say whether a session fit should start now."""
        return self.seconds >= max(FIRST, GROWTH * self.last_fit)

    def start(self):
        """Mark a session fit started; return (chunks seen, the (chunk, window)s it fits)."""
        self.last_fit = self.seconds
        return self.chunks, list(self.entries)

    def since(self, count):
        """Return the windows of chunks ``count`` and later (data a fit has not seen)."""
        return [win for k, win in self.entries if k >= count]
