"""How the report and README print numbers: one formatter for "mean ± 95 % half-width", a
percentage, and the ends of an interval."""
from __future__ import annotations


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def pm(x: dict | None, key: str | None = None, digits: int | None = None, signed: bool = False) -> str:
    """Mean ± 95 % half-width of one interval {"mean": m, "ci95": [lo, hi]}, or of `key` in a
    summary group / stats dict {"mean": {key: m}, "ci95": {key: [lo, hi]}}.

    Accuracy by default: "98.41% ± 0.21" (the half-width in points). `signed`: a paired
    difference in points, "+0.12 ± 0.30" (never "-0.00"). `digits`: a plain number, "0.0077 ± 0.0020".
    None (nothing measured) prints "—"."""
    if x is None:
        return "—"
    m, (lo, hi) = (x["mean"][key], x["ci95"][key]) if key else (x["mean"], x["ci95"])
    if digits is not None:
        return f"{m:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"
    half = f"{100 * (hi - lo) / 2:.2f}"
    if not signed:
        return f"{100 * m:.2f}% ± {half}"
    return f"{signed_text(100 * m)} ± {half}"


def ci_range(st: dict) -> str:
    """The ends of an interval as percentages: "99.36%–99.67%"."""
    return f"{pct(st['ci95'][0])}–{pct(st['ci95'][1])}"


def signed_text(x: float, digits: int = 2) -> str:
    """A signed number that never prints as "-0.00" or "+0.00": "+0.12", "0.00"."""
    text = f"{x:+.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0 else text
