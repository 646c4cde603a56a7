"""Opening hours with a time zone: `open("office")` in a branch condition."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .fields import INVALID, Ctx, FieldType, ListOf, Located, MapOf, Struct, Text, spec
from .yamlsrc import LMap, Scalar, pos_of

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


def _day_set(spec_text: str) -> list[int] | None:
    """'mon-fri', 'sat', 'mon,wed,fri', 'daily' -> weekday numbers (0 = Monday)."""
    s = spec_text.strip().lower()
    if s in ("daily", "every day", "all"):
        return list(range(7))
    out: list[int] = []
    for part in s.split(","):
        part = part.strip()
        if "-" in part:
            a, _, b = part.partition("-")
            if a.strip()[:3] not in DAYS or b.strip()[:3] not in DAYS:
                return None
            i, j = DAYS.index(a.strip()[:3]), DAYS.index(b.strip()[:3])
            out.extend(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part[:3] in DAYS:
            out.append(DAYS.index(part[:3]))
        else:
            return None
    return out


class WeeklyHours(FieldType):
    """A mapping of days to time ranges: `mon-fri: "08:00-18:00"`, `sat: closed`."""

    name = "days mapped to time ranges"

    def parse(self, v, ctx: Ctx):
        if not isinstance(v, LMap):
            return ctx.error("bad-value", "expected days mapped to time ranges", pos_of(v),
                             'for example  mon-fri: "08:00-18:00"')
        week: dict[int, list[tuple[int, int]]] = {d: [] for d in range(7)}
        closed_days: set[int] = set()  # "closed" wins over ranges from wider day groups
        for key, val in v.items():
            days = _day_set(key)
            if days is None:
                ctx.error("bad-hours", f"{key!r} is not a day or day range", v.key_pos[key],
                          "use mon..sun, ranges like mon-fri, lists like mon,wed, or daily")
                continue
            items = val if isinstance(val, list) else [val]
            for item in items:
                if not isinstance(item, Scalar):
                    ctx.error("bad-hours", "expected a time range like 08:00-18:00", pos_of(item))
                    continue
                if item.raw.strip().lower() == "closed":
                    closed_days.update(days)
                    continue
                m = _RANGE.fullmatch(item.raw)
                if not m:
                    ctx.error("bad-hours", f"{item.raw!r} is not a time range", item.pos,
                              'write "08:00-18:00" (quotes are optional)')
                    continue
                h1, m1, h2, m2 = map(int, m.groups())
                start, end = h1 * 60 + m1, h2 * 60 + m2
                if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or start >= end or end > 24 * 60:
                    ctx.error("bad-hours", f"{item.raw!r} is not a valid range (start before end, 00:00-24:00)",
                              item.pos)
                    continue
                for d in days:
                    week[d].append((start, end))
        for d in closed_days:
            week[d] = []
        return week

    def schema(self):
        rng = {"type": "string", "pattern": r"^\s*(\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}|closed)\s*$"}
        return {"type": "object", "additionalProperties": {"anyOf": [rng, {"type": "array", "items": rng}]}}


class TimeZone(Text):
    """An IANA time zone name such as Europe/London."""

    def __init__(self):
        super().__init__(None, "a time zone (Europe/London)")

    def parse(self, v, ctx):
        s = super().parse(v, ctx)
        if s is INVALID:
            return s
        try:
            ZoneInfo(s)
        except (ZoneInfoNotFoundError, ValueError):
            return ctx.error("bad-timezone", f"unknown time zone {s!r}", pos_of(v),
                             "use an IANA name such as Europe/London or America/New_York")
        return s


class DateT(Text):
    """A calendar date, YYYY-MM-DD."""

    def __init__(self):
        super().__init__(r"\d{4}-\d{2}-\d{2}", "a date (YYYY-MM-DD)")

    def parse(self, v, ctx):
        s = super().parse(v, ctx)
        if s is INVALID:
            return s
        try:
            return dt.date.fromisoformat(s)
        except ValueError:
            return ctx.error("bad-value", f"{s!r} is not a real date", pos_of(v))


@dataclass
class Hours(Located):
    """Opening hours: weekly ranges in a time zone, with closed dates."""

    TITLE: ClassVar[str] = "opening hours"

    timezone: str = spec(TimeZone(), "IANA time zone the hours are in", required=True)
    weekly: dict = spec(WeeklyHours(), 'days to ranges, e.g. mon-fri: "08:00-18:00"', required=True)
    closed: list = spec(ListOf(DateT()), "dates on which the line is closed all day", factory=list)

    def is_open(self, when: dt.datetime) -> bool:
        """True when `when` (an aware datetime) falls in these hours."""
        local = when.astimezone(ZoneInfo(self.timezone))
        if local.date() in set(self.closed or ()):
            return False
        minute = local.hour * 60 + local.minute
        return any(a <= minute < b for a, b in (self.weekly or {}).get(local.weekday(), []))


def local_time_between(when: dt.datetime, start: str, end: str, tz: str | None) -> bool:
    """The `time_between()` function of conditions; ranges may cross midnight."""
    local = when.astimezone(ZoneInfo(tz)) if tz else when
    m = _RANGE.fullmatch(f"{start}-{end}")
    if not m:
        return False
    h1, m1, h2, m2 = map(int, m.groups())
    a, b, now = h1 * 60 + m1, h2 * 60 + m2, local.hour * 60 + local.minute
    return a <= now < b if a <= b else (now >= a or now < b)


def local_weekday(when: dt.datetime, tz: str | None) -> str:
    """The `weekday()` function: mon .. sun in the given zone."""
    local = when.astimezone(ZoneInfo(tz)) if tz else when
    return DAYS[local.weekday()]


HOURS_MAP = MapOf(Struct(Hours))
