"""A campaign's uplift over its control group, with an interval that stays honest however often
the report is read. Pure arithmetic on the counters kept at collect time: no store, no web.

**Analysis: intention-to-treat.** Everyone assigned counts, whether or not they saw the offer, so
the comparison keeps the randomisation: the estimand is the effect of *assigning* the campaign.
``y`` is 1 for a person who converted at least once in the attribution window.

**Interval: an always-valid confidence sequence.** Marketers read reports every day; a classical
95% interval read every day and acted on at the first exclusion of 0 is wrong far more than 5% of
the time (``tests/campaigns/test_uplift.py`` measures it). The interval here is the Gaussian-mixture
asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform
central limit theory and asymptotic confidence sequences" (Annals of Statistics, 2024;
arXiv:2103.06476), whose boundary is Robbins' normal mixture as in Howard, Ramdas, McAuliffe &
Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences" (Annals of Statistics,
2021):

    estimate ± sigma_t * sqrt(2 (t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha))

with t the people assigned to either group and sigma_t^2 / t the estimated variance of the
difference in means, s_T^2 / n_T + s_C^2 / n_C (the paper's randomised-experiment case). The
mixing parameter rho is fixed in advance so that the sequence is tightest at the planned size
t* = 2 x ``planned_people`` (the paper's choice):

    rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / t*

Any planned size keeps the guarantee; a good guess only makes the interval narrower there. The
guarantee is asymptotic, like every CLT interval: it needs a few dozen conversions per group,
and each group's p (1 - p) is computed with one success and one failure added so that a group
without conversions yet does not give a zero-width interval.

**Adjustment: CUPED** (Deng, Xu, Kohavi & Walker, WSDM 2013) on a covariate ``x`` measured before
assignment: y' = y - theta (x - mean x) with theta = cov(x, y) / var(x) pooled within groups.
Because ``x`` cannot be moved by the assignment, the adjusted difference estimates the same
effect, with its variance cut by up to the squared correlation of x and y. With a binary y the
per-group sums are enough: var(y) = p (1 - p) and cov(x, y) = xy_sum / n - mean(x) p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TypedDict

DEFAULT_PLANNED_PEOPLE = 10_000  # per group: what the mixing parameter is tuned for by default
# Below this many people per group the pooled slope theta is mostly noise: no adjustment.
MIN_PEOPLE_FOR_CUPED = 30
DEFAULT_COVARIATE = "activity in the 30 days before assignment"

ITT_STATEMENT = "intention-to-treat: everyone assigned counts, whether or not they saw the offer"


@dataclass(frozen=True)
class GroupCounts:
    """One group's counters, all sums over the persons assigned to it."""

    people: int  # persons assigned to the group (ITT denominator)
    conversions: int  # persons who converted at least once in the attribution window (y in {0,1})
    revenue: float  # sum of conversion value over persons
    revenue_sq: float  # sum over persons of (revenue of the person)^2
    x_sum: float  # sum over persons of x, a pre-assignment covariate
    x_sq_sum: float  # sum of x^2
    xy_sum: float  # sum of x*y (y = converted 0/1)
    impressions: int = 0
    clicks: int = 0


class UpliftReport(TypedDict):
    confidence: float
    people_total: int
    rates: dict[str, float | None]
    absolute: float | None
    relative: float | None
    ci95: list[float] | None
    relative_ci95: list[float] | None
    ci95_fixed_horizon: list[float] | None
    significant: bool | None
    incremental_conversions: float | None
    incremental_conversions_ci95: list[float] | None
    incremental_revenue: float | None
    incremental_revenue_ci95: list[float] | None
    cost: float
    roi: float | None
    roi_ci95: list[float] | None
    method: dict[str, object]


@dataclass(frozen=True)
class _Estimate:
    """A difference of group means with its standard error."""

    value: float
    se: float


def mixing_rho2(planned_total: float, alpha: float) -> float:
    """The normal mixture's rho^2 that makes the sequence tightest at ``planned_total`` people."""
    log_inv = -2.0 * math.log(alpha)
    return (log_inv + math.log1p(log_inv)) / planned_total


def boundary_multiplier(people_total: float, planned_total: float, alpha: float) -> float:
    """m such that ``estimate ± m * standard error`` is the confidence sequence at this size.

    The sequence's half-width divided by the standard error sigma_t / sqrt(t); where the classical
    interval uses 1.96, this is about 3.0 at the planned size and grows like sqrt(log t) past it.
    """
    u = people_total * mixing_rho2(planned_total, alpha)
    return math.sqrt(2.0 * (1.0 + 1.0 / u) * (0.5 * math.log1p(u) - math.log(alpha)))


def required_people(
    baseline_rate: float,
    min_detectable_uplift: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    sequential: bool = True,
) -> int:
    """People per group (even split) to detect an absolute uplift in conversion rate.

    ``min_detectable_uplift`` is absolute (0.01 = one percentage point). With ``sequential`` (what
    the report uses) the size is where the always-valid interval, tuned for it by passing the
    result as ``planned_people``, excludes 0 with the given power; rho tuned for the size makes
    its multiplier a constant, about 3.04 for alpha = 0.05 against 1.96 for a single look.
    Without it, the classical two-proportion size for one look at the end.
    """
    if not 0.0 < baseline_rate < 1.0 or not 0.0 < baseline_rate + min_detectable_uplift < 1.0:
        raise ValueError(
            "baseline_rate and baseline_rate + min_detectable_uplift must be in (0, 1)"
        )
    if min_detectable_uplift == 0.0:
        raise ValueError("min_detectable_uplift must not be 0")
    p0, p1 = baseline_rate, baseline_rate + min_detectable_uplift
    variance = p0 * (1.0 - p0) + p1 * (1.0 - p1)
    z_power = NormalDist().inv_cdf(power)
    if sequential:
        # With t* = 2n, t * rho^2 at t = t* no longer depends on n: the multiplier is fixed.
        reach = boundary_multiplier(2.0, 2.0, alpha) + z_power
    else:
        reach = NormalDist().inv_cdf(1.0 - alpha / 2.0) + z_power
    return math.ceil(reach**2 * variance / min_detectable_uplift**2)


def _check(group: GroupCounts, name: str) -> None:
    if group.people < 0 or group.conversions < 0 or group.impressions < 0 or group.clicks < 0:
        raise ValueError(f"{name}: counts must not be negative")
    if group.conversions > group.people:
        raise ValueError(
            f"{name}: {group.conversions} conversions for {group.people} people; a conversion "
            "counts a person once (y in {0, 1}), so conversions cannot exceed people"
        )
    sums = (group.revenue, group.revenue_sq, group.x_sum, group.x_sq_sum, group.xy_sum)
    if not all(math.isfinite(v) for v in sums):
        raise ValueError(f"{name}: sums must be finite numbers")
    if group.revenue < 0 or group.revenue_sq < 0 or group.x_sq_sum < 0:
        raise ValueError(f"{name}: revenue, revenue_sq and x_sq_sum must not be negative")


def _rate_variance(group: GroupCounts) -> float:
    """Per-person variance of y, p(1 - p), with one success and one failure added.

    Only the variance is shrunk, not the estimate (Agresti & Caffo, 2000): a group with no
    conversions yet has p(1 - p) = 0, which would give a zero-width interval around 0.
    """
    p = (group.conversions + 1.0) / (group.people + 2.0)
    return p * (1.0 - p)


def _centred(group: GroupCounts) -> tuple[float, float]:
    """(sum of (x - mean x)^2, sum of (x - mean x)(y - mean y)) within the group."""
    n = group.people
    sxx = max(group.x_sq_sum - group.x_sum * group.x_sum / n, 0.0)
    sxy = group.xy_sum - group.x_sum * group.conversions / n
    return sxx, sxy


class _Conversion:
    """The conversion-rate difference, CUPED-adjusted when the covariate helps."""

    def __init__(self, treated: GroupCounts, control: GroupCounts, cuped: bool, covariate: str):
        self.n_t, self.n_c = treated.people, control.people
        self.mean_t = treated.conversions / self.n_t
        self.mean_c = control.conversions / self.n_c
        self.var_t, self.var_c = _rate_variance(treated), _rate_variance(control)
        unadjusted_var = self.var_t / self.n_t + self.var_c / self.n_c
        self.statement = self._adjust(treated, control, cuped, covariate, unadjusted_var)

    def _adjust(
        self,
        treated: GroupCounts,
        control: GroupCounts,
        cuped: bool,
        covariate: str,
        unadjusted_var: float,
    ) -> str:
        why_not = "CUPED not applied: "
        if not cuped:
            return why_not + "turned off for this report"
        if min(self.n_t, self.n_c) < MIN_PEOPLE_FOR_CUPED:
            return why_not + f"fewer than {MIN_PEOPLE_FOR_CUPED} people in a group"
        (sxx_t, sxy_t), (sxx_c, sxy_c) = _centred(treated), _centred(control)
        sxx = sxx_t + sxx_c
        if not sxx > 1e-12 * (treated.x_sq_sum + control.x_sq_sum) or not math.isfinite(sxx):
            return why_not + f"{covariate} is the same for everyone"
        theta = (sxy_t + sxy_c) / sxx
        # Each group's variance falls by what the pooled slope explains of it.
        var_t = max(self.var_t - (2.0 * theta * sxy_t - theta * theta * sxx_t) / self.n_t, 0.0)
        var_c = max(self.var_c - (2.0 * theta * sxy_c - theta * theta * sxx_c) / self.n_c, 0.0)
        adjusted_var = var_t / self.n_t + var_c / self.n_c
        if not adjusted_var < unadjusted_var:  # also False for NaN
            return why_not + f"{covariate} does not predict conversion"
        x_mean = (treated.x_sum + control.x_sum) / (self.n_t + self.n_c)
        self.mean_t -= theta * (treated.x_sum / self.n_t - x_mean)
        self.mean_c -= theta * (control.x_sum / self.n_c - x_mean)
        self.var_t, self.var_c = var_t, var_c
        reduction = 100.0 * (1.0 - adjusted_var / unadjusted_var)
        return (
            f"CUPED on pre-assignment {covariate}: variance reduced by {reduction:.1f}% "
            f"(theta = {theta:.4g}, pooled within groups)"
        )

    def absolute(self) -> _Estimate:
        # mean_t - mean_c with the adjustment spelt out keeps a swap of groups an exact negation.
        return _Estimate(
            self.mean_t - self.mean_c, math.sqrt(self.var_t / self.n_t + self.var_c / self.n_c)
        )

    def relative(self) -> _Estimate | None:
        """(treated rate / control rate) - 1 with its delta-method standard error."""
        if not self.mean_c > 0.0:
            return None
        ratio = self.mean_t / self.mean_c
        # Divided twice: the square of a tiny adjusted control rate would underflow to 0.
        variance = (self.var_t / self.n_t + ratio * ratio * self.var_c / self.n_c) / self.mean_c
        variance /= self.mean_c
        if not (math.isfinite(ratio) and math.isfinite(variance)):
            return None  # a control rate so near 0 that no ratio means anything
        return _Estimate(ratio - 1.0, math.sqrt(variance))


def _revenue_per_person(
    treated: GroupCounts, control: GroupCounts, value_per_conversion: float | None
) -> tuple[_Estimate, str]:
    groups = []
    recorded = treated.revenue != 0 or control.revenue != 0
    value = None if recorded else value_per_conversion
    for group in (treated, control):
        total, total_sq = group.revenue, group.revenue_sq
        if value is not None:
            # Every converter converted once (y in {0, 1}): value v, square v^2.
            total, total_sq = group.conversions * value, group.conversions * value**2
        mean = total / group.people
        groups.append((mean, max(total_sq / group.people - mean * mean, 0.0), group.people))
    (mean_t, var_t, n_t), (mean_c, var_c, n_c) = groups
    statement = (
        f"no revenue recorded: conversions valued at {value:g} each"
        if value is not None
        else "recorded conversion value per person assigned, not CUPED-adjusted"
    )
    return _Estimate(mean_t - mean_c, math.sqrt(var_t / n_t + var_c / n_c)), statement


def _finite(x: float | None, digits: int) -> float | None:
    """Rounded for the report (+ 0.0 turns -0.0 into 0.0); None when there is no number."""
    if x is None or not math.isfinite(x):
        return None
    return round(x, digits) + 0.0


def _interval(
    estimate: _Estimate | None, half: float, scale: float, digits: int
) -> list[float] | None:
    if estimate is None:
        return None
    low = _finite((estimate.value - half * estimate.se) * scale, digits)
    high = _finite((estimate.value + half * estimate.se) * scale, digits)
    return None if low is None or high is None else [low, high]


def uplift(
    treated: GroupCounts,
    control: GroupCounts,
    *,
    cost_per_contact: float = 0.0,
    value_per_conversion: float | None = None,
    alpha: float = 0.05,
    planned_people: int | None = None,
    cuped: bool = True,
    covariate: str = DEFAULT_COVARIATE,
) -> UpliftReport:
    """The report's ``uplift`` block: treated against control, intention-to-treat.

    ``planned_people`` is the people per group the campaign plans to reach (default 10,000); the
    interval is tightest there and valid at every size. Fix it when the campaign starts: choosing
    it after seeing the data would void the guarantee. ``ci95`` keeps its name whatever
    ``alpha`` is; ``confidence`` says the level. Undefined figures (a group with nobody yet, a
    relative uplift over a control group with no conversions) are None.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    if cost_per_contact < 0 or (value_per_conversion is not None and value_per_conversion < 0):
        raise ValueError("cost_per_contact and value_per_conversion must not be negative")
    planned = DEFAULT_PLANNED_PEOPLE if planned_people is None else planned_people
    if planned < 1:
        raise ValueError(f"planned_people must be at least 1, not {planned_people}")
    _check(treated, "treated")
    _check(control, "control")

    level = round(100.0 * (1.0 - alpha), 6)
    cost = cost_per_contact * treated.people  # ITT: every treated person is a contact
    method: dict[str, object] = {
        "analysis": ITT_STATEMENT,
        "interval": (
            f"{level:g}% always-valid (confidence sequence): asymptotic confidence sequence of "
            "Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024), normal-mixture boundary "
            f"tuned for {planned} people per group; valid however often the report is read, "
            "so the campaign may be checked daily and stopped at any time"
        ),
        "fixed_horizon": (
            "ci95_fixed_horizon: the classical interval, valid only for one look at a size "
            "fixed in advance; shown for comparison, not for decisions"
        ),
    }
    report: UpliftReport = {
        "confidence": round(1.0 - alpha, 6),
        "people_total": treated.people + control.people,
        "rates": {"treated": None, "control": None},
        "absolute": None,
        "relative": None,
        "ci95": None,
        "relative_ci95": None,
        "ci95_fixed_horizon": None,
        "significant": None,
        "incremental_conversions": None,
        "incremental_conversions_ci95": None,
        "incremental_revenue": None,
        "incremental_revenue_ci95": None,
        "cost": round(cost, 2),
        "roi": None,
        "roi_ci95": None,
        "method": method,
    }
    if treated.people == 0 or control.people == 0:
        method["adjustment"] = "CUPED not applied: a group has nobody assigned yet"
        method["ci95_fixed_horizon"] = None
        return report

    sequence = boundary_multiplier(treated.people + control.people, 2.0 * planned, alpha)
    single_look = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    conversion = _Conversion(treated, control, cuped, covariate)
    absolute, relative = conversion.absolute(), conversion.relative()
    revenue, revenue_statement = _revenue_per_person(treated, control, value_per_conversion)
    method["adjustment"] = conversion.statement
    method["revenue"] = revenue_statement

    ci = _interval(absolute, sequence, 1.0, 6)
    report["rates"] = {
        "treated": _finite(treated.conversions / treated.people, 6),
        "control": _finite(control.conversions / control.people, 6),
    }
    report["absolute"] = _finite(absolute.value, 6)
    report["relative"] = None if relative is None else _finite(relative.value, 6)
    report["ci95"] = ci
    report["relative_ci95"] = _interval(relative, sequence, 1.0, 6)
    report["ci95_fixed_horizon"] = _interval(absolute, single_look, 1.0, 6)
    method["ci95_fixed_horizon"] = report["ci95_fixed_horizon"]
    report["significant"] = None if ci is None else (ci[0] > 0.0 or ci[1] < 0.0)
    report["incremental_conversions"] = _finite(absolute.value * treated.people, 2)
    report["incremental_conversions_ci95"] = _interval(absolute, sequence, treated.people, 2)
    incremental_revenue = revenue.value * treated.people
    report["incremental_revenue"] = _finite(incremental_revenue, 2)
    revenue_ci = _interval(revenue, sequence, treated.people, 2)
    report["incremental_revenue_ci95"] = revenue_ci
    if cost > 0.0:
        # ROI is affine in the revenue difference: its interval is that one's, mapped.
        roi = _Estimate((incremental_revenue - cost) / cost, revenue.se * treated.people / cost)
        report["roi"] = _finite(roi.value, 4)
        report["roi_ci95"] = _interval(roi, sequence, 1.0, 4)
    return report
