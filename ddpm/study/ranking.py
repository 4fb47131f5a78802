"""Which differences between variants are real: an interval per variant's FID, ranks only where they part.

Per variant, at one N:
- one finished training seed: the FID and its record's own 95% interval (`fid_interval`: a bootstrap
  over the generated sample set, ddpm/fid/bootstrap.py). It covers the sampling noise of the FID only,
  not how another training seed would have come out.
- several finished seeds: the mean FID over seeds with a Student t 95% interval over the seeds
  (mean +- t(0.975, k - 1) s / sqrt(k)): the spread between training runs, which contains the sampling
  noise of each. Two seeds give a wide interval (t = 12.7), as they should.
- no interval (the metric was not asked for, or a single seed's record lacks it): shown, never ranked.

Tiers: the best variant leads tier 1 and every variant whose interval overlaps the leader's joins it;
the first one that does not leads tier 2, and so on. Each variant also lists every other variant its
interval overlaps ("not distinguishable from"), across tiers too: overlap is not transitive, and a pair
that overlaps is never called better or worse. Lower FID is better.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from ddpm.study.results import MemberResult

LEVEL = 0.95
BOOTSTRAP = "bootstrap over the sample set"
SEEDS_T = "t interval over training seeds"
NO_INTERVAL = "no interval"


@dataclass(frozen=True)
class VariantFigure:
    """One variant's FID at one N: value, 95% interval (None when there is none) and how it was made."""

    variant: str
    n: int
    value: float
    low: float | None
    high: float | None
    seeds: int  # finished seeds the figure is made of
    method: str  # BOOTSTRAP, SEEDS_T or NO_INTERVAL

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def overlaps(self, other: VariantFigure) -> bool:
        assert self.has_interval and other.has_interval
        return self.low <= other.high and other.low <= self.high  # type: ignore[operator]

    def describe(self) -> str:
        if not self.has_interval:
            return f"{self.value:.2f} (no interval)"
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def t_quantile(level: float, dof: int) -> float:
    """The two-sided Student t quantile (scipy's, imported here only: the API reads results without it)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def variant_figures(results: Sequence[MemberResult], n: int) -> list[VariantFigure]:
    """Every variant with at least one finished seed scored at N, in the results' order."""
    per_variant: dict[str, list[MemberResult]] = {}
    for result in results:
        if n in result.scores():
            per_variant.setdefault(result.variant, []).append(result)
    figures = []
    for variant, members in per_variant.items():
        rows = [member.scores()[n] for member in members]
        if len(rows) == 1:
            interval = rows[0].fid_interval
            figures.append(
                VariantFigure(
                    variant,
                    n,
                    rows[0].fid,
                    interval.low if interval else None,
                    interval.high if interval else None,
                    1,
                    BOOTSTRAP if interval else NO_INTERVAL,
                )
            )
            continue
        values = [row.fid for row in rows]
        mean = statistics.fmean(values)
        half = t_quantile(LEVEL, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        figures.append(VariantFigure(variant, n, mean, mean - half, mean + half, len(values), SEEDS_T))
    return figures


@dataclass(frozen=True)
class Ranking:
    n: int
    figures: list[VariantFigure]  # best first: those with intervals, then those without
    tiers: list[list[str]]  # variants with intervals, tier by tier, best first
    indistinct: dict[str, list[str]] = field(default_factory=dict)  # variant -> overlapping variants
    unranked: list[str] = field(default_factory=list)  # no interval: shown, not ranked

    def tier_of(self, variant: str) -> int | None:
        """1-based tier, None when the variant is not ranked."""
        for index, tier in enumerate(self.tiers, 1):
            if variant in tier:
                return index
        return None

    def lines(self) -> list[str]:
        """The ranking as Markdown lines (the report's "Ranking" section)."""
        if not self.figures:
            return [f"No variant has an FID at N={self.n} yet: nothing to rank."]
        methods = sorted({figure.method for figure in self.figures if figure.has_interval})
        out = [
            f"FID at N={self.n}, lower is better, with {LEVEL:.0%} intervals ({'; '.join(methods) or 'none'}). "
            "Variants whose intervals overlap are not ranked against each other."
        ]
        by_name = {figure.variant: figure for figure in self.figures}
        for index, tier in enumerate(self.tiers, 1):
            out.append(f"- Tier {index}:")
            for variant in tier:
                figure = by_name[variant]
                same = self.indistinct.get(variant, [])
                note = f"; not distinguishable from {', '.join(same)}" if same else ""
                seeds = f", {figure.seeds} seeds" if figure.seeds > 1 else ""
                out.append(f"  - {variant}: {figure.describe()}{seeds}{note}")
        if len(self.tiers) == 1 and len(self.tiers[0]) > 1:
            out.append("All intervals overlap: this study cannot tell these variants apart at this N.")
        for variant in self.unranked:
            out.append(f"- {variant}: {by_name[variant].describe()}: no interval, so not ranked")
        return out


def rank(results: Sequence[MemberResult], n: int | None = None) -> Ranking:
    """Rank at N (default: the largest N any member was scored at)."""
    if n is None:
        counts = [count for result in results for count in result.scores()]
        if not counts:
            return Ranking(0, [], [])
        n = max(counts)
    figures = variant_figures(results, n)
    ranked = sorted((f for f in figures if f.has_interval), key=lambda f: f.value)
    unranked = sorted((f for f in figures if not f.has_interval), key=lambda f: f.value)
    tiers: list[list[str]] = []
    leader: VariantFigure | None = None
    for figure in ranked:
        if leader is None or not figure.overlaps(leader):
            leader = figure
            tiers.append([])
        tiers[-1].append(figure.variant)
    indistinct = {
        figure.variant: [other.variant for other in ranked if other is not figure and figure.overlaps(other)]
        for figure in ranked
    }
    return Ranking(n, ranked + unranked, tiers, indistinct, [f.variant for f in unranked])
