"""When appointments happen: US federal holidays, day volumes, clinic hours and time formatting."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from simulator import profiles

EPOCH_DAY = date(1970, 1, 1)
# "MM:SSZ" for every second of an hour: a UTC timestamp is its hour's prefix and one of these.
_MINUTE_SECOND_Z = tuple(f"{minute:02d}:{second:02d}Z" for minute in range(60) for second in range(60))


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    # A holiday on Saturday is observed on Friday, on Sunday on Monday (5 U.S.C. 6103).
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def us_federal_holidays(year: int) -> dict[date, str]:
    """Observed US federal holidays of a year (the same calendar as the dbt holidays seed)."""
    fixed = {
        "new_years_day": date(year, 1, 1),
        "juneteenth": date(year, 6, 19),
        "independence_day": date(year, 7, 4),
        "veterans_day": date(year, 11, 11),
        "christmas_day": date(year, 12, 25),
    }
    holidays = {_observed(day): name for name, day in fixed.items()}
    holidays[_nth_weekday(year, 1, 0, 3)] = "martin_luther_king_jr_day"
    holidays[_nth_weekday(year, 2, 0, 3)] = "washingtons_birthday"
    holidays[_last_weekday(year, 5, 0)] = "memorial_day"
    holidays[_nth_weekday(year, 9, 0, 1)] = "labor_day"
    holidays[_nth_weekday(year, 10, 0, 2)] = "columbus_day"
    holidays[_nth_weekday(year, 11, 3, 4)] = "thanksgiving_day"
    return holidays


def is_holiday(day: date) -> bool:
    return day in us_federal_holidays(day.year) or day in us_federal_holidays(day.year + 1)


def day_weights(start: date, end: date) -> list[tuple[date, float]]:
    """Relative appointment volume of each day of [start, end]."""
    days = (end - start).days + 1
    weights = []
    for i in range(days):
        day = start + timedelta(days=i)
        weight = profiles.WEEKDAY_FACTOR[day.weekday()] * (1 + profiles.TREND_OVER_PERIOD * i / max(days - 1, 1))
        if is_holiday(day):
            weight *= profiles.HOLIDAY_FACTOR
        weights.append((day, weight))
    return weights


def allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder): exact sum."""
    whole = sum(weights)
    raw = [total * w / whole for w in weights]
    parts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (parts[i] - raw[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


class ClinicClock:
    """Local clinic hours to UTC epoch seconds, and fast ISO 8601 rendering with any offset."""

    def __init__(self) -> None:
        self.tz = ZoneInfo(profiles.CLINIC_TZ)
        self._day_cache: dict[int, str] = {}
        self._hour_cache: dict[int, str] = {}
        self._offset_cache: dict[int, int] = {}

    def utc_offset_seconds(self, day: date) -> int:
        """The clinic's UTC offset at noon of a local day (DST switches happen at night)."""
        key = day.toordinal()
        offset = self._offset_cache.get(key)
        if offset is None:
            noon = datetime(day.year, day.month, day.day, 12, tzinfo=self.tz)
            offset = int(noon.utcoffset().total_seconds())
            self._offset_cache[key] = offset
        return offset

    def local_to_epoch(self, day: date, minute_of_day: int) -> int:
        midnight_utc = (day - EPOCH_DAY).days * 86400
        return midnight_utc + minute_of_day * 60 - self.utc_offset_seconds(day)

    def _day(self, epoch_day: int) -> str:
        text = self._day_cache.get(epoch_day)
        if text is None:
            text = (EPOCH_DAY + timedelta(days=epoch_day)).isoformat()
            self._day_cache[epoch_day] = text
        return text

    def _hour(self, epoch_hour: int) -> str:
        prefix = self._hour_cache.get(epoch_hour)
        if prefix is None:
            day, hour = divmod(epoch_hour, 24)
            prefix = f"{self._day(day)}T{hour:02d}:"
            self._hour_cache[epoch_hour] = prefix
        return prefix

    def iso(self, epoch: int, offset_seconds: int = 0) -> str:
        """``2026-09-01T14:30:00Z`` or, with an offset, the same instant as local time ``...-04:00``.

        The UTC form is two lookups and a concatenation (it is called several times per event message)."""
        if offset_seconds == 0:
            epoch_hour, rest = divmod(epoch, 3600)
            prefix = self._hour_cache.get(epoch_hour)
            if prefix is None:
                prefix = self._hour(epoch_hour)
            return prefix + _MINUTE_SECOND_Z[rest]
        epoch_hour, rest = divmod(epoch + offset_seconds, 3600)
        minute, second = divmod(rest, 60)
        sign = "+" if offset_seconds > 0 else "-"
        oh, om = divmod(abs(offset_seconds) // 60, 60)
        return f"{self._hour(epoch_hour)}{minute:02d}:{second:02d}{sign}{oh:02d}:{om:02d}"

    def utc_date(self, epoch: int) -> str:
        return self._day(epoch // 86400)
