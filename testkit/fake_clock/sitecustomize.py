"""Imported by every Python process of a faked-date run (``python -m testkit.fake_dates`` puts this
folder on PYTHONPATH): the wall clock (time.time, datetime.now, ...) runs TELEMED_FAKE_CLOCK_OFFSET seconds
away from the real one and keeps ticking, in every process alike. Monotonic clocks are left alone."""

import os

_offset = os.environ.get("TELEMED_FAKE_CLOCK_OFFSET")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
