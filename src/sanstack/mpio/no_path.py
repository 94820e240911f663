"""What a multipath device does with I/O while no path is usable ("all paths down").

dm-multipath's ``no_path_retry``: fail at once, queue for a bounded time, or queue until a
path returns; Windows keeps the pseudo-LUN for PDORemovePeriod (20 s by default). The
waiting I/Os are the callers themselves, each awaiting a path with its own deadline, so the
queue is bounded by the callers' own bounds (the NBD server's in-flight limit), and shutdown
ends every wait at once (``stop``): nothing hangs past its bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sanstack.errors import ConfigError


class NoPathPolicy(Enum):
    FAIL = "fail"
    QUEUE_FOR = "queue-for"  # ``seconds`` then fail
    QUEUE = "queue"  # until a path returns or the device stops


@dataclass(frozen=True, slots=True)
class NoPathRetry:
    policy: NoPathPolicy = NoPathPolicy.QUEUE_FOR
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.policy is NoPathPolicy.QUEUE_FOR and not 0 < self.seconds <= 86400:
            raise ConfigError("no_path_retry", "seconds must be in (0, 86400]")

    def deadline(self, since: float) -> float | None:
        """When an I/O that found no path at ``since`` gives up; None means never."""
        if self.policy is NoPathPolicy.FAIL:
            return since
        if self.policy is NoPathPolicy.QUEUE_FOR:
            return since + self.seconds
        return None

    @classmethod
    def parse(cls, text: str) -> NoPathRetry:
        """``fail``, ``queue`` or a number of seconds (as ``--no-path-queue SECONDS``)."""
        if text == "fail":
            return cls(NoPathPolicy.FAIL, 0.0)
        if text == "queue":
            return cls(NoPathPolicy.QUEUE, 0.0)
        try:
            seconds = float(text)
        except ValueError:
            raise ConfigError("no_path_retry", f"{text!r} is not fail, queue or seconds") from None
        if seconds == 0:
            return cls(NoPathPolicy.FAIL, 0.0)
        return cls(NoPathPolicy.QUEUE_FOR, seconds)
