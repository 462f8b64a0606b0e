"""The memory ``cleaner serve`` may spend on uploads at once: bytes, not a count of requests.

A count of concurrent decodes does not bound memory: two 50-megapixel PNGs cost a hundred times
what two thumbnails do, and a request waiting for its turn with its body already read holds
that body meanwhile. Each upload reserves its cost from one :class:`DecodeBudget` before its
body is read: the body's bytes plus the pixels it may declare (:func:`upload_cost`), times
:data:`BYTES_PER_PIXEL`; once the header is read (nothing decoded yet) the reservation shrinks
to the pixels it does declare. A request that would pass the budget waits; one larger than the
whole budget runs alone.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

from cleaner import images
from cleaner.errors import CleanerError

BYTES_PER_PIXEL = 8
"""What a decode may cost a pixel: a 16-bit RGBA PNG decodes to 8 bytes a pixel (its 8-bit RGB
view, 3 more, is made from it and the 8 freed; a JPEG's 3 are well inside)."""

DEFAULT_BUDGET_MB = 512
"""Upload bodies and decodes in flight, all requests together (``cleaner serve
--upload-budget-mb``)."""


def check_budget_mb(mb: float, flag: str = "--upload-budget-mb") -> float:
    """A budget in MB (2**20 bytes) that is a positive, finite number; one line otherwise."""
    if not math.isfinite(mb) or mb <= 0:
        raise CleanerError(
            f"{flag} {mb:g} is not a positive number of MB; give the memory uploads in flight "
            f"may use together, e.g. {flag} {DEFAULT_BUDGET_MB} (the default)"
        )
    return mb


def upload_cost(nbytes: int, pixels: int | None = None) -> int:
    """Bytes an upload of ``nbytes`` may cost: its body, plus ``pixels`` (default: the most its
    size lets it declare, :func:`cleaner.images.upload_pixel_budget`) decoded."""
    if pixels is None:
        pixels = images.upload_pixel_budget(nbytes)
    return nbytes + pixels * BYTES_PER_PIXEL


class Reservation:
    """One request's share of the budget; :meth:`shrink` gives back what it will not use."""

    def __init__(self, budget: DecodeBudget, cost: int) -> None:
        self.budget, self.cost = budget, cost

    def shrink(self, cost: int) -> None:
        cost = min(self.cost, max(0, cost))
        self.budget._give_back(self.cost - cost)
        self.cost = cost


class DecodeBudget:
    """Bytes of uploads in flight, bounded by ``total``; thread-safe."""

    def __init__(self, total: int) -> None:
        self.total = max(1, int(total))
        self.used = 0
        self.peak = 0
        """The most ever reserved at once (never above ``total``)."""
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, cost: int) -> Iterator[Reservation]:
        """Wait until ``cost`` (capped at ``total``: a request larger than the budget runs
        alone) fits, reserve it for the block, then give it back."""
        cost = min(max(0, int(cost)), self.total)
        with self._cond:
            while self.used + cost > self.total:
                self._cond.wait()
            self.used += cost
            self.peak = max(self.peak, self.used)
        r = Reservation(self, cost)
        try:
            yield r
        finally:
            self._give_back(r.cost)
            r.cost = 0

    def _give_back(self, n: int) -> None:
        if n <= 0:
            return
        with self._cond:
            self.used -= n
            self._cond.notify_all()
