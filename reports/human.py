"""A human reviewer's feedback: approve, or comments per section; and the `--comments FILE` format.

The file format (documented in the README): a line `## <section>` (a section key such as
`results`, or its title such as `Simulation design`) starts that section's comment; the lines
below it, up to the next `##` line, are the comment. Lines before the first heading and lines
starting with `#` followed by a space are ignored. A file whose only word is `approve` approves
the report as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from reports.models import SECTION_KEYS, SECTION_TITLES
from societas.errors import SocietasError

APPROVE = "approve"


class HumanFeedback(BaseModel):
    """What `human_review` receives when the graph resumes."""

    model_config = ConfigDict(extra="forbid")
    approve: bool = False
    comments: dict[str, str] = Field(default_factory=dict)
    source: str = "prompt"

    @property
    def approves(self) -> bool:
        return self.approve or not self.comments


def section_key(name: str, keys: tuple[str, ...] = SECTION_KEYS) -> str | None:
    """A section key from a key or a title, case- and space-insensitive."""
    norm = " ".join(name.lower().replace("_", " ").split())
    for key in keys:
        if norm in (key, " ".join(SECTION_TITLES.get(key, key).lower().split())):
            return key
    return None


def parse_comments(text: str, source: str = "file") -> HumanFeedback:
    """Feedback from the comments format; an unknown section or a file with nothing in it is a user error."""
    if text.strip().lower() == APPROVE:
        return HumanFeedback(approve=True, source=source)
    comments: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        heading = re.match(r"^##\s+(.+?)\s*#*\s*$", line)
        if heading:
            current = section_key(heading.group(1))
            if current is None:
                raise SocietasError(f"the comments name an unknown section {heading.group(1)!r}",
                                    hint="use one of: " + ", ".join(SECTION_KEYS))
            comments.setdefault(current, [])
        elif current is not None and not re.match(r"^#(\s|$)", line):
            comments[current].append(line)
    found = {k: "\n".join(v).strip() for k, v in comments.items() if "\n".join(v).strip()}
    if not found:
        raise SocietasError("the comments file has no comments",
                            hint="write '## results' followed by your comment, or only the word 'approve'")
    return HumanFeedback(comments=found, source=source)


def read_comments(path: Path | str) -> HumanFeedback:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SocietasError(f"cannot read the comments file {path}: {exc.strerror}",
                            hint="give a readable file with --comments") from None
    return parse_comments(text, source=str(path))
