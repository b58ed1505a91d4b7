"""How the report and README print numbers: percentages, mean ± 95 % half-width, paired differences."""
from __future__ import annotations


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def pm(group: dict, key: str) -> str:
    """"98.41% ± 0.21"(95 % CI half-width, points) from a summary group."""
    m, (lo, hi) = group["mean"][key], group["ci95"][key]
    return f"{100 * m:.2f}% ± {100 * (hi - lo) / 2:.2f}"


def pmi(st: dict, digits: int | None = None) -> str:
    """One {"mean": …, "ci95": […]} interval (stats.interval): "98.41% ± 0.21" (points),
    or with `digits` a plain "0.9951 ± 0.0012"."""
    m, half = st["mean"], (st["ci95"][1] - st["ci95"][0]) / 2
    return f"{100 * m:.2f}% ± {100 * half:.2f}" if digits is None else f"{m:.{digits}f} ± {half:.{digits}f}"


def delta_pp(st: dict | None) -> str:
    """A paired difference interval in points: "+0.12 ± 0.30", or "—"."""
    if not st:
        return "—"
    mean = f"{100 * st['mean']:+.2f}"
    mean = "0.00" if float(mean) == 0 else mean      # never "-0.00" or "+0.00"
    return f"{mean} ± {100 * (st['ci95'][1] - st['ci95'][0]) / 2:.2f}"


def pm_plain(stats: dict, key: str, digits: int = 4) -> str:
    """"0.0077 ± 0.0020" from a {"mean": …, "ci95": …} dict (no percent, fixed digits)."""
    m, (lo, hi) = stats["mean"][key], stats["ci95"][key]
    return f"{m:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"
