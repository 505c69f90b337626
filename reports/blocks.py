"""The Markdown subset that sections' code-made parts use, parsed once for the LaTeX and HTML renderers.

Blocks: paragraphs, bullet lists (`- item`), pipe tables (`| a | b |` with a `|---|` rule) and
bold-label lines. Inline: `**bold**`, `*italic*`, `` `code` ``; everything else is literal
text, which each renderer escapes. Prose written by a model is never parsed as Markdown:
renderers treat it as plain paragraphs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_INLINE_RE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_RULE_RE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


@dataclass
class Block:
    kind: str  # "para" | "list" | "table"
    lines: list[str] = field(default_factory=list)  # paragraph text (one item) or list items
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def inline(text: str) -> list[tuple[str, str]]:
    """(style, text) spans; style is "", "b", "i" or "code"."""
    spans, last = [], 0
    for m in _INLINE_RE.finditer(text):
        if m.start() > last:
            spans.append(("", text[last : m.start()]))
        if m.group(1) is not None:
            spans.append(("b", m.group(1)))
        elif m.group(2) is not None:
            spans.append(("code", m.group(2)))
        else:
            spans.append(("i", m.group(3)))
        last = m.end()
    if last < len(text):
        spans.append(("", text[last:]))
    return spans


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|") if line.strip().endswith("|") else line.strip().lstrip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def parse(markdown: str) -> list[Block]:
    """Blocks in order; unknown constructs read as paragraphs."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _RULE_RE.match(lines[i + 1].strip()):
            block = Block("table", header=_cells(line))
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                row = _cells(lines[i])
                block.rows.append((row + [""] * len(block.header))[: len(block.header)])
                i += 1
            blocks.append(block)
            continue
        if re.match(r"^\s*[-*] ", line):
            block = Block("list")
            while i < len(lines) and (re.match(r"^\s*[-*] ", lines[i]) or (lines[i].startswith("  ") and lines[i].strip())):
                if re.match(r"^\s*[-*] ", lines[i]):
                    block.lines.append(re.sub(r"^\s*[-*] ", "", lines[i]).strip())
                else:
                    block.lines[-1] += " " + lines[i].strip()
                i += 1
            blocks.append(block)
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not re.match(r"^\s*[-*] ", lines[i]) \
                and not lines[i].lstrip().startswith("|"):
            para.append(lines[i].strip())
            i += 1
        if not para:  # a lone table-looking line without a rule: text
            para, i = [line.strip()], i + 1
        blocks.append(Block("para", lines=[" ".join(para)]))
    return blocks


def paragraphs(prose: str) -> list[str]:
    """Plain prose split at blank lines, each paragraph on one line."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", prose) if p.strip()]
