"""When a scheduled Slurm run fires next: a cron expression or a fixed period, as an `sbatch --begin` time.

A scheduled run on Slurm is a job that, first thing, submits its own successor with
`sbatch --begin=NEXT` (deploy/slurm/factory.sbatch). NEXT comes from here:

    python -m factory.cluster.schedule next "0 3 * * 1"     # -> 2026-12-07T03:00:00
    python -m factory.cluster.schedule next "every 6h"      # -> the next multiple of 6 h since the epoch

Cron expressions are read in the local time of the machine computing them (the batch host), as
cron and Slurm's own `--begin` do. A period ("every 90s", "every 30m", "every 6h", "every 7d") fires
at multiples of itself counted from the Unix epoch, so firings never drift by however long a job
waited in the queue.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta

from factory.cluster.templates import TemplateError, check_cron

_EVERY = re.compile(r"^every\s+([0-9]+)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CRON_NAMES = ({}, {}, {}, {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())},
    {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())})
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def check_schedule(spec: str) -> None:
    """A five-field cron expression or `every N{s,m,h,d}`; the message says which forms exist."""
    if spec.strip().startswith("every"):
        m = _EVERY.match(spec.strip())
        if not m or int(m.group(1)) < 1:
            raise TemplateError(f"schedule {spec!r}: write a period as 'every N' plus s, m, h or d, "
                                "e.g. 'every 6h', or use a cron expression such as '0 3 * * 1'")
        return
    check_cron(spec)


def _field_values(text: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = lo, hi
        else:
            ends = [int(e) if e.isdigit() else names[e.lower()] for e in base.split("-")]
            # "a-b": a to b; "a/step": a to the field's end; "a": a alone.
            start, end = ends[0], (ends[1] if len(ends) == 2 else hi if step_text else ends[0])
        values.update(range(start, end + 1, step))
    return values


def next_fire(spec: str, after: datetime) -> datetime:
    """The first firing strictly after `after` (naive local time for cron, as cron reads it)."""
    check_schedule(spec)
    spec = spec.strip()
    m = _EVERY.match(spec)
    if m:
        period = int(m.group(1)) * _UNIT_S[m.group(2)]
        now = after.timestamp()
        return datetime.fromtimestamp((int(now // period) + 1) * period)
    minute, hour, dom, month, dow = (
        _field_values(f, lo, hi, names) for f, (lo, hi), names in zip(spec.split(), _CRON_RANGES, _CRON_NAMES))
    dow = {d % 7 for d in dow}  # 7 is Sunday too
    # Cron's rule: with both day fields restricted, a day matches if either does.
    dom_any, dow_any = spec.split()[2] == "*", spec.split()[4] == "*"
    day = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    limit = after + timedelta(days=366 * 5)  # 29 Feb on a Monday can take years; beyond that, never
    while day <= limit:
        weekday = (day.weekday() + 1) % 7  # cron: 0 = Sunday
        if dom_any or dow_any:
            day_ok = (day.day in dom) and (weekday in dow)
        else:
            day_ok = (day.day in dom) or (weekday in dow)
        if day.month in month and day_ok:
            for h in sorted(x for x in hour if x >= day.hour):
                for mi in sorted(minute):
                    t = day.replace(hour=h, minute=mi)
                    if t >= day:
                        return t
        day = (day + timedelta(days=1)).replace(hour=0, minute=0)
    raise TemplateError(f"schedule {spec!r} never fires (within five years)")


def begin_time(spec: str, after: datetime | None = None) -> str:
    """The next firing as `sbatch --begin` reads it: YYYY-MM-DDTHH:MM:SS, local time."""
    return next_fire(spec, after or datetime.now()).strftime("%Y-%m-%dT%H:%M:%S")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "next":
        print("usage: python -m factory.cluster.schedule next SCHEDULE", file=sys.stderr)
        return 2
    try:
        print(begin_time(argv[1]))
    except TemplateError as e:
        print(f"factory schedule: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
