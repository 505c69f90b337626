"""Pure rendering and checking of reports; depends on nothing in `researcher/` or `simulator/`."""

from reports.checks import comments_from_checks, run_checks, strip_untraced_numbers, untraced_numbers
from reports.markdown import facts_table, render_markdown, substitute, verdicts_table

__all__ = [
    "comments_from_checks",
    "facts_table",
    "render_markdown",
    "run_checks",
    "strip_untraced_numbers",
    "substitute",
    "untraced_numbers",
    "verdicts_table",
]
