"""The analysis of an N-of-1 program comparison (issue 17; the design is
``tens_control/comparison.py``).

**Outcome.** The primary outcome is the patient's *daily pain* in the headline series (the mean of
a day's before-session and diary ratings, as everywhere in the review), averaged over the rated
days of a block. Wash-out days and days after today are left out. The secondary outcome is the
*within-session change* (after − before) of the sessions run with each program.

**Unit.** The block, not the session or the day: days within a block are not independent (pain
carries over, the patient's week has its own shape). Within each cycle of the schedule every
program had one block, in a random order, so for two programs A and B the cycle gives one
difference ``d = mean(A block) − mean(B block)``; with ``n`` finished cycles:

* the difference is the mean of the ``d`` (negative: A has less pain), with a 95 % interval
  ``d̄ ± t(0.975, n − 1) · s / √n``;
* the probability that A is better is the posterior probability that the true difference is
  below 0 under a normal model with flat priors, ``T(n − 1)(−d̄ / (s / √n))`` (Student's t);
* a **randomisation test over the schedule** is reported beside it: the order within each cycle
  was random, so under "no difference" every sign of every ``d`` was as likely; the p value is
  the share of the ``2^n`` sign patterns whose mean is at least as far from 0 as the one seen;
* "how many more cycles would settle it": the fewest cycles for which an interval of the same
  spread would exclude 0 at the difference seen (none when the difference is 0).

With more than two programs each pair is compared this way, and the verdict names the best.
A cycle whose block of either program has no rated day is left out of that pair.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from tens_control.comparison import Block, ProgramComparison
from tens_control.review.analytics import BACKGROUND_WHENS, Zone, local_day, today_in
from tens_control.review.model import PatientData, SeriesKey
from tens_control.review.wording import Line, plural

CONFIDENCE = 0.95
SETTLE_WITHIN = 20
"""How many cycles in all "how many more would settle it" looks for before saying none."""


# --------------------------------------------------------------------------- Student's t


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (bisection: exact to 1e-9)."""
    low, high = -1e4, 1e4
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-10:
            break
    return (low + high) / 2.0


# --------------------------------------------------------------------------- the figures


@dataclass(frozen=True, slots=True)
class BlockFigures:
    block: Block
    finished: bool
    """The block's last day is before today."""
    rated_days: int
    daily_pain: float | None
    """Mean daily pain over its rated days (wash-out excluded); None without a rated day."""


@dataclass(frozen=True, slots=True)
class ProgramFigures:
    program: str
    blocks_done: int
    """Finished blocks with at least one rated day."""
    blocks_planned: int
    daily_pain: float | None
    """Mean of its finished blocks' daily pain."""
    session_change: float | None
    """Mean after − before of the sessions run with it (on scheduled days, wash-out excluded)."""
    sessions_rated: int


@dataclass(frozen=True, slots=True)
class PairResult:
    better: str
    other: str
    difference: float
    """How much less daily pain ``better`` gave, in NRS points (≥ 0)."""
    ci_low: float | None
    ci_high: float | None
    """The 95 % interval of the difference (None with fewer than two cycles)."""
    probability: float | None
    """Posterior probability that ``better`` is really better."""
    p_randomisation: float | None
    cycles_done: int
    cycles_planned: int
    cycles_to_settle: int | None
    """Cycles in all that would make the interval exclude 0 at this difference (None: not
    within :data:`SETTLE_WITHIN`, or the interval already does)."""

    @property
    def settled(self) -> bool:
        return self.ci_low is not None and self.ci_low > 0.0


@dataclass(frozen=True, slots=True)
class ComparisonResult:
    plan: ProgramComparison
    key: SeriesKey
    blocks: tuple[BlockFigures, ...]
    programs: tuple[ProgramFigures, ...]
    pairs: tuple[PairResult, ...]
    deviations: int
    """Sessions on a scheduled day run with another program than the day's."""
    scheduled_sessions: int
    verdict: str


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pair(a: str, b: str, diffs: Sequence[float], planned: int) -> PairResult:
    """``diffs``: per cycle, daily pain with ``a`` minus with ``b``."""
    n = len(diffs)
    mean = sum(diffs) / n
    better, other, sign = (a, b, -1.0) if mean <= 0 else (b, a, 1.0)
    difference = abs(mean)
    if n < 2:
        return PairResult(better, other, difference, None, None, None, None, n, planned, None)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    tq = t_quantile(0.5 + CONFIDENCE / 2.0, n - 1)
    # in "better minus other" terms: positive means better has less pain
    centre = sign * mean
    low, high = centre - tq * se, centre + tq * se
    probability = (1.0 if difference > 0 else 0.5) if se == 0.0 else t_cdf(centre / se, n - 1)
    flips = [
        abs(sum(s * d for s, d in zip(signs, diffs, strict=True)) / n)
        for signs in itertools.product((1.0, -1.0), repeat=n)
    ]
    p_rand = sum(1 for f in flips if f >= abs(mean) - 1e-12) / len(flips)
    settle: int | None = None
    if low <= 0.0 and difference > 0 and sd > 0:
        for m in range(max(n, 2), SETTLE_WITHIN + 1):
            if t_quantile(0.5 + CONFIDENCE / 2.0, m - 1) * sd / math.sqrt(m) < difference:
                settle = m
                break
    return PairResult(better, other, difference, low, high, probability, p_rand, n, planned, settle)


def _fmt(value: float) -> str:
    return f"{value:.1f}".replace("-0.0", "0.0")


def percent(probability: float) -> str:
    """A probability for people: never "100 %" or "0 %" (no finite data make it certain)."""
    if probability > 0.99:
        return "> 99 %"
    if probability < 0.01:
        return "< 1 %"
    return f"{probability * 100:.0f} %"


def verdict_of(pairs: Sequence[PairResult], planned: int) -> str:
    """The comparison in a clinician's words (one line per pair when more than two programs)."""
    if not pairs:
        return f"comparison: no finished pair of blocks yet (0 of {planned} planned)"
    lines = []
    for p in pairs:
        done = f"{p.cycles_done} of {p.cycles_planned} planned block pairs done"
        if p.ci_low is None or p.ci_high is None or p.probability is None:
            lines.append(
                f"{p.better} vs {p.other}: {_fmt(p.difference)} points less pain with {p.better} "
                f"so far, too few blocks to compare; {done}"
            )
            continue
        interval = f"95 % interval {_fmt(p.ci_low)} to {_fmt(p.ci_high)}"
        if p.settled:
            lines.append(
                f"{p.better} better than {p.other} by {_fmt(p.difference)} points ({interval}), "
                f"{percent(p.probability)} probability; {done}"
            )
        else:
            more = ""
            if p.cycles_to_settle is not None and p.cycles_to_settle > p.cycles_done:
                more = (
                    f"; about {p.cycles_to_settle - p.cycles_done} more block pairs would settle "
                    "a difference this size"
                )
            lines.append(
                f"no clear difference between {p.better} and {p.other}: {_fmt(p.difference)} "
                f"points ({interval}), {percent(p.probability)} probability {p.better} is "
                f"better; {done}{more}"
            )
    return "; ".join(lines)


def compare(
    data: PatientData,
    plan: ProgramComparison,
    key: SeriesKey,
    today: date,
    tz: Zone = None,
) -> ComparisonResult:
    """The comparison's figures from one patient's data (days in ``tz``)."""
    schedule = plan.schedule()
    daily: dict[date, list[int]] = {}
    for r in data.ratings:
        if r.value is None or (r.pain, r.posture) != key or r.when not in BACKGROUND_WHENS:
            continue
        daily.setdefault(local_day(r.at, tz), []).append(r.value)
    blocks: list[BlockFigures] = []
    for block in schedule:
        days = [
            sum(v) / len(v)
            for day, v in daily.items()
            if block.contains(day) and not block.is_washout(day) and day < today
        ]
        blocks.append(BlockFigures(block, block.last_day < today, len(days), _mean(days)))
    # sessions: within-session change by the program used; deviations from the schedule
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for r in data.ratings:
        if r.session_id is None or r.value is None or (r.pain, r.posture) != key:
            continue
        if r.when == "before":
            before[r.session_id] = r.value
        elif r.when == "after":
            after[r.session_id] = r.value
    changes: dict[str, list[float]] = {p: [] for p in plan.programs}
    deviations = scheduled = 0
    for s in data.sessions:
        day = local_day(s.start, tz)
        on = plan.block_on(day)
        if on is None:
            continue
        scheduled += 1
        if s.program != on.program:
            deviations += 1
        if on.is_washout(day) or s.program is None or s.program not in changes:
            continue
        if s.id in before and s.id in after:
            changes[s.program].append(after[s.id] - before[s.id])
    programs = []
    for program in plan.programs:
        done = [
            b
            for b in blocks
            if b.block.program == program and b.finished and b.daily_pain is not None
        ]
        programs.append(
            ProgramFigures(
                program,
                len(done),
                plan.blocks_per_program,
                _mean([b.daily_pain for b in done if b.daily_pain is not None]),
                _mean(changes[program]),
                len(changes[program]),
            )
        )
    by_cycle: dict[int, dict[str, float]] = {}
    for b in blocks:
        if b.finished and b.daily_pain is not None:
            by_cycle.setdefault(b.block.cycle, {})[b.block.program] = b.daily_pain
    pairs = []
    for a, c in itertools.combinations(plan.programs, 2):
        diffs = [v[a] - v[c] for v in by_cycle.values() if a in v and c in v]
        if diffs:
            pairs.append(_pair(a, c, diffs, plan.blocks_per_program))
    best = _best(programs)
    if best is not None and len(plan.programs) > 2:
        pairs = [p for p in pairs if best in (p.better, p.other)]
    return ComparisonResult(
        plan,
        key,
        tuple(blocks),
        tuple(programs),
        tuple(pairs),
        deviations,
        scheduled,
        verdict_of(pairs, plan.blocks_per_program),
    )


def comparison_line(result: ComparisonResult) -> Line:
    """The report's line: the verdict, and how closely the patient kept to the schedule."""
    text = result.verdict
    if result.scheduled_sessions:
        text += (
            f"; {result.deviations} of {plural(result.scheduled_sessions, 'session')} on "
            "scheduled days with another program than the day's"
        )
    settled = any(p.settled for p in result.pairs)
    return Line("Programs", text, "ok" if settled else "info")


def detail_lines(result: ComparisonResult) -> list[Line]:
    """Everything behind the verdict, for the review screen: per program, per pair (with the
    randomisation test), the blocks in schedule order."""
    lines = []
    for f in result.programs:
        pain = (
            "no finished block" if f.daily_pain is None else f"mean daily pain {_fmt(f.daily_pain)}"
        )
        change = (
            ""
            if f.session_change is None
            else f"; each session {f.session_change:+.1f} (n={f.sessions_rated})"
        )
        lines.append(
            Line(
                f"  {f.program}",
                f"{pain} in {f.blocks_done} of {f.blocks_planned} blocks{change}",
            )
        )
    for p in result.pairs:
        if p.p_randomisation is not None:
            floor = 2 / 2**p.cycles_done
            lines.append(
                Line(
                    "  Randomisation",
                    f"{p.better} vs {p.other}: p = {p.p_randomisation:.3f} over the schedule's "
                    f"sign patterns ({p.cycles_done} cycles: p cannot be below {floor:.3f})",
                )
            )
    blocks = " · ".join(
        f"{b.block.index + 1} {b.block.program} "
        + ("–" if b.daily_pain is None else _fmt(b.daily_pain))
        + ("" if b.finished else " (running)" if b.rated_days else "")
        for b in result.blocks
        if b.finished or b.rated_days
    )
    if blocks:
        lines.append(Line("  Blocks", blocks))
    return lines


def compare_data(data: PatientData, tz: Zone = None) -> ComparisonResult | None:
    """The comparison the patient's prescriptions set up, in their headline series, as of the
    review's day (``None`` without a comparison)."""
    plan = data.comparison
    if plan is None:
        return None
    key = data.prescriptions[-1].headline
    today = data.today if data.today is not None else today_in(tz)
    return compare(data, plan, key, today, tz)


def _best(programs: Iterable[ProgramFigures]) -> str | None:
    rated = [p for p in programs if p.daily_pain is not None]
    return min(rated, key=lambda p: p.daily_pain or 0.0).program if rated else None


__all__ = [
    "BlockFigures",
    "ComparisonResult",
    "PairResult",
    "ProgramFigures",
    "compare",
    "compare_data",
    "comparison_line",
    "detail_lines",
    "percent",
    "t_cdf",
    "t_quantile",
    "verdict_of",
]
