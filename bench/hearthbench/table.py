"""The table bench/run prints: per line hearth's median, the peer's median, the ratio (hearth /
peer), which side is better, and each side's min-max over the rounds."""
import statistics

DECIMALS = {"req/s": 0, "conn/s": 0, "MiB/s": 1, "ms": 2, "s": 2, "KiB": 0, "B": 0,
            "requests": 0}


def fmt(value, unit):
    d = DECIMALS.get(unit, 2)
    return f"{value:,.{d}f}"


def spread(values, unit):
    return f"{fmt(min(values), unit)}–{fmt(max(values), unit)}"


def compare(ours, theirs, higher_is_better):
    """(ratio text, better side) from the two medians."""
    if theirs == 0:
        return ("n/a", "even") if ours == 0 else ("n/a", "peer" if not higher_is_better
                                                   else "hearth")
    ratio = ours / theirs
    if ratio == 1:
        better = "even"
    elif (ratio > 1) == higher_is_better:
        better = "hearth"
    else:
        better = "peer"
    return f"{ratio:.2f}", better


HEADER = ("| # | row | unit | hearth | peer | peer median | hearth/peer | better "
          "| hearth min–max | peer min–max |\n"
          "|---|-----|------|-------:|------|------------:|------------:|--------"
          "|---------------:|-------------:|")


def line_text(number, line, results, errors):
    """One table line; a side that failed shows FAILED and its reason instead of figures, and
    the other side its figures still."""
    def side_cells(side):
        if side in errors:
            return "FAILED", f"{side}: {errors[side]}", None
        values = [r[line.metric] for r in results[side]]
        median = statistics.median(values)
        return fmt(median, line.unit), spread(values, line.unit), median

    ours, ours_range, m_ours = side_cells(line.ours)
    theirs, theirs_range, m_theirs = side_cells(line.theirs)
    ratio, better = ("", "") if None in (m_ours, m_theirs) else \
        compare(m_ours, m_theirs, line.higher_is_better)
    return (f"| {number} | {line.label} | {line.unit} | {ours} | {line.theirs} | {theirs} | "
            f"{ratio} | {better} | {ours_range} | {theirs_range} |")
