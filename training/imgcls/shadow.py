"""The shadow check of a guarded lossy network at serving time (docs/serving.md, "The guard").

The probe at load bounds the lossy form's error on 8 images; requests may differ from
them. So 1 in ``rate`` served images (``IMGCLS_SHADOW_RATE``, default 50; 0: off), at most
``limit`` in all (``IMGCLS_SHADOW_LIMIT``, default 500), also runs through the fp32 graph
in the same pass as the guard's close calls, and its fp32 answer is the one returned. Once
the lossy top-1 class differed on more than ``MAX_DISAGREEMENT`` of ``limit`` sampled
images (5 of 500), the lossy form is dropped for good.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

RATE_VAR = "IMGCLS_SHADOW_RATE"
LIMIT_VAR = "IMGCLS_SHADOW_LIMIT"
DEFAULT_RATE = 50
DEFAULT_LIMIT = 500
# The guard means to keep eager's top-1 class everywhere; a sample disagreeing on more than
# 1% of the images it may check says the probe's error bound does not hold for the traffic.
MAX_DISAGREEMENT = 0.01


def _env_count(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default)).strip()
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number >= 0, got {raw!r}")
    return int(raw)


@dataclass
class Shadow:
    """Which images to check and how many disagreed; safe to share between threads."""

    rate: int = 0  # 1 in ``rate`` images is checked; 0: none
    limit: int = 0  # images checked in all, at most
    seen: int = 0
    checked: int = 0
    disagreed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_env(cls) -> Shadow:
        return cls(_env_count(RATE_VAR, DEFAULT_RATE), _env_count(LIMIT_VAR, DEFAULT_LIMIT))

    @property
    def bound(self) -> int:
        """Disagreements tolerated; one more drops the lossy form."""
        return int(MAX_DISAGREEMENT * self.limit)

    def pick(self, count: int) -> list[int]:
        """Which of the next ``count`` images to check: every ``rate``-th image served
        (the first one included), until ``limit`` have been checked."""
        with self._lock:
            first, self.seen = self.seen, self.seen + count
            if not self.rate:
                return []
            picked = [i for i in range(count) if (first + i) % self.rate == 0]
            picked = picked[: max(0, self.limit - self.checked)]
            self.checked += len(picked)
            return picked

    def record(self, disagreed: int) -> bool:
        """Count ``disagreed`` more disagreements; True only for the call that takes the
        count beyond the bound (so one caller drops the lossy form and logs it)."""
        with self._lock:
            was_over = self.disagreed > self.bound
            self.disagreed += disagreed
            return not was_over and self.disagreed > self.bound

    def describe(self) -> str:
        return (
            f"its top-1 class differed from the fp32 graph's on {self.disagreed} of "
            f"{self.checked} sampled images (more than {self.bound} of the {self.limit} the "
            f"shadow check samples, 1 in {self.rate})"
        )
