"""The one retry policy: exponential backoff with a cap, optional jitter, and a reset.

Pure (no I/O, no clock): a ``Backoff`` computes delays; the caller sleeps or schedules. It is
used by the engine's loops (``bridge.engine.service``), a job's failed attempts
(``bridge.engine.worker``), the cancel outbox (``bridge.engine.cancels``), the CE client's
retries (``bridge.remote.client``) and the start-up waits (``bridge.checks``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

#: Exponents above this are not computed (the cap holds long before).
_MAX_EXPONENT = 64


@dataclass
class Backoff:
    """Delays that grow by ``factor`` from ``initial`` up to ``cap``.

    Two ways to use it, one formula:

    - stateless, from a stored attempt count: ``delay(attempt)`` is
      ``min(cap, initial * factor ** attempt)``;
    - stateful, in a loop: ``failed()`` grows the current delay (``current * factor``, at
      least ``floor``, at most ``cap``) and returns it; ``reset()`` goes back to ``initial``.

    With ``jitter`` (a fraction in 0..1) a returned delay is drawn uniformly from
    ``[delay * (1 - jitter), delay]``: ``jitter=1`` is "full jitter".

    Attributes:
        initial: the first delay (and the delay after ``reset``), in seconds.
        cap: the longest delay.
        factor: growth per failure.
        jitter: fraction of each delay that is randomised (0: none).
        rng: the random source of the jitter (injectable for tests).
    """

    initial: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.0
    rng: Callable[[], float] = field(default=random.random, repr=False)
    current: float = field(init=False)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("initial and cap must be >= 0, factor >= 1, jitter in 0..1")
        self.current = self.initial

    def delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (0 = the first wait): ``initial *
        factor ** attempt``, at most ``cap``, jittered."""
        exponent = min(max(attempt, 0), _MAX_EXPONENT)
        return self._jittered(min(self.cap, self.initial * self.factor**exponent))

    def failed(self, *, floor: float = 0.0, cap: float | None = None) -> float:
        """Records a failure: the current delay grows (at least ``floor``, at most ``cap``,
        default the policy's) and is returned, jittered."""
        self.current = min(self.cap if cap is None else cap, max(floor, self.current * self.factor))
        return self._jittered(self.current)

    def reset(self) -> None:
        """After a success: the next failure starts again from ``initial``."""
        self.current = self.initial

    def _jittered(self, value: float) -> float:
        if not self.jitter:
            return value
        return value * (1.0 - self.jitter + self.jitter * self.rng())
