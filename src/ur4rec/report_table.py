"""Tables, for the terminal and for Markdown files: one renderer for every table ur4rec
prints or writes."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(
    rows: Sequence[dict[str, object]], columns: Sequence[str], markdown: bool = False
) -> str:
    """``rows`` under ``columns``, aligned for the terminal or as a Markdown table; floats
    print with 4 decimals, missing cells stay empty."""

    def cell(value: object) -> str:
        if value is None:
            return ""
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)
