"""Progress for long loads: a tqdm bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, label: str, unit: str, total: int | None = None, log_every_s: float = 10.0):
        self.label, self.unit = label, unit
        self.count = 0
        self._bar = None
        self._log_every_s = log_every_s
        self._last_log = time.monotonic()
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=f" {unit}", unit_scale=True, leave=False)

    def update(self, n: int) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last_log >= self._log_every_s:
            self._last_log = time.monotonic()
            log.info("%s: %d %s so far", self.label, self.count, self.unit)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
