"""References a report may cite: only entries of a shipped or user-given BibTeX file, matched by keyword.

A report never cites what a model wrote: the plan's theories and the scenario's references are
only *matched* (whole words, case-insensitive) against each entry's `keywords` (or, for a user
entry without keywords, its first author's surname), and the matching entries are cited.
The parser reads the plain BibTeX subset bibliographies use (`@type{key, field = {..} or ".."}`,
nested braces, `@comment`/`@string` skipped) and turns accent macros into Unicode, so renderers
escape the text like any other.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from reports.models import Reference
from societas.errors import SocietasError

SHIPPED = "theories.bib"
_ENTRY_RE = re.compile(r"@\s*([A-Za-z]+)\s*\{")
_ACCENT_RE = re.compile(r"""\{?\\([`'^"~=.uvHckr])\s*\{?\s*(\\?[A-Za-z])\s*\}?\}?""")
_ACCENTS = {"`": "\u0300", "'": "\u0301", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304",
            ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328",
            "r": "\u030a"}


def _detex(value: str) -> str:
    """BibTeX field text as plain Unicode: accents composed, other macros and braces dropped."""
    def accent(m: re.Match[str]) -> str:
        base = {"\\i": "i", "\\j": "j"}.get(m.group(2), m.group(2).lstrip("\\"))
        return unicodedata.normalize("NFC", base + _ACCENTS[m.group(1)])

    text = _ACCENT_RE.sub(accent, value)
    text = re.sub(r"\\[A-Za-z]+\s*", "", text).replace("\\", "")
    text = text.replace("{", "").replace("}", "").replace("--", "–")
    return " ".join(text.split())


def _braced(text: str, start: int) -> tuple[str, int]:
    """The text inside the braces that open at `start`, and the index after the closing one."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    raise ValueError("unbalanced braces")


_FIELD_RE = re.compile(r"\s*,?\s*([A-Za-z][\w-]*)\s*=\s*")
_BARE_VALUE_RE = re.compile(r"[^,}\s]+")


def _fields(body: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    i = 0
    while m := _FIELD_RE.match(body, i):
        i = m.end()
        if i < len(body) and body[i] == "{":
            value, i = _braced(body, i)
        elif i < len(body) and body[i] == '"':
            end = body.find('"', i + 1)
            if end < 0:
                raise ValueError(f"unterminated quoted value of {m.group(1)}")
            value, i = body[i + 1 : end], end + 1
        else:
            vm = _BARE_VALUE_RE.match(body, i)
            if not vm:
                break
            value, i = vm.group(), vm.end()
        fields[m.group(1).lower()] = value
    return fields


def parse_bibtex(text: str) -> list[Reference]:
    """Every entry with a key, a title and an author or editor; malformed entries raise ValueError."""
    refs: list[Reference] = []
    for m in _ENTRY_RE.finditer(text):
        kind = m.group(1).lower()
        if kind in ("comment", "string", "preamble"):
            continue
        body, _ = _braced(text, m.end() - 1)
        key, _, rest = body.partition(",")
        fields = {k: _detex(v) for k, v in _fields(rest).items()}
        authors = fields.get("author") or fields.get("editor", "")
        if not key.strip() or not fields.get("title") or not authors:
            continue
        keywords = [k.strip() for k in fields.get("keywords", "").split(",") if k.strip()]
        first = authors.split(" and ")[0]
        words = (first.split(",")[0] if "," in first else first).split()  # "Last, First" or "First Last"
        surname = words[-1] if words else ""
        refs.append(Reference(
            key=re.sub(r"[^A-Za-z0-9:_-]", "", key.strip()) or f"ref{len(refs) + 1}",
            kind=kind, authors=authors, title=fields["title"], year=fields.get("year", ""),
            venue=fields.get("journal") or fields.get("booktitle") or fields.get("publisher", ""),
            details=", ".join(p for p in (fields.get("volume", "") + (f"({fields['number']})" if fields.get("number") else ""),
                                          fields.get("pages", "")) if p),
            keywords=keywords or [w for w in (surname,) if w],
        ))
    return refs


def shipped() -> list[Reference]:
    """The curated bibliography that ships with societas (reports/bibliography/theories.bib)."""
    return list(_shipped())


@functools.cache
def _shipped() -> tuple[Reference, ...]:  # read and parsed once per process
    return tuple(parse_bibtex(resources.files("reports").joinpath("bibliography", SHIPPED).read_text(encoding="utf-8")))


def load_bibliography(path: Path | str | None = None) -> list[Reference]:
    """The shipped entries, plus a user's BibTeX file (its entries win on equal keys)."""
    refs = {r.key: r for r in shipped()}
    if path is None:
        return list(refs.values())
    try:
        user = parse_bibtex(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise SocietasError(f"cannot read the bibliography {path}: {exc.strerror}",
                            hint="give a readable BibTeX file with --bib") from None
    except ValueError as exc:
        raise SocietasError(f"the bibliography {path} is not valid BibTeX ({exc})",
                            hint="check its braces, or leave out --bib") from None
    if not user:
        raise SocietasError(f"the bibliography {path} has no usable entries",
                            hint="entries need a key, an author and a title")
    refs.update({r.key: r for r in user})
    return list(refs.values())


def match_references(texts: Iterable[str], bibliography: Iterable[Reference]) -> list[Reference]:
    """Entries whose keywords occur as whole words in `texts`, in bibliography order."""
    haystack = " ".join(texts)
    found = []
    for ref in bibliography:
        if any(re.search(r"(?<!\w)" + re.escape(k) + r"(?!\w)", haystack, re.IGNORECASE) for k in ref.keywords):
            found.append(ref)
    return found



_CITATION_RE = re.compile(r"^\s*(?P<authors>[^()]+?)\s*\((?P<year>(?:1[5-9]|20)\d\d[a-z]?)\)\s*[.,:]?\s*(?P<rest>.+?)\s*$")
_AUTHOR_SPLIT_RE = re.compile(r"(?<=\.),\s+(?=[^\s,]+,)")  # "Marsili, M., Vespignani, A." -> two authors


def parse_reference(text: str) -> Reference | None:
    """A scenario's reference string (`Surname, I. and Other, J. (2000). Title. Venue, 85, 5468.`) as
    an entry, read loosely: fields the text does not hold stay empty, never guessed. None when it has
    no author (year) title shape."""
    m = _CITATION_RE.match(text)
    if not m:
        return None
    authors = " and ".join(_AUTHOR_SPLIT_RE.split(m["authors"].rstrip(",").replace(" & ", " and ")))
    title, _, venue = re.sub(r"([.?!])\s+", "\\1\n", m["rest"], count=1).partition("\n")
    title, venue = title.rstrip(". "), venue.rstrip(". ")
    surname = _surname(authors)
    if not surname or not title:
        return None
    venue, _, details = venue.partition(", ")
    return Reference(key=_ascii(surname).lower() + m["year"], kind="misc", authors=authors, title=title,
                     year=m["year"], venue=venue, details=details, keywords=[surname])


def _surname(authors: str) -> str:
    """The first author's surname, from "Last, First and ..." or "First Last and ..."."""
    first = authors.split(" and ")[0]
    words = (first.split(",")[0] if "," in first else first).split()
    return words[-1] if words else ""


def _ascii(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", unicodedata.normalize("NFKD", text))


def cited_references(theories: Iterable[str], scenario_refs: Iterable[str],
                     bibliography: Iterable[Reference]) -> list[Reference]:
    """What a report cites: the bibliography's entries the theories or the scenario's references name,
    then each of the scenario's own references that no such entry already stands for (same first
    surname and year), so the reference list matches the Background, which lists both."""
    bibliography, scenario_refs = list(bibliography), list(scenario_refs)
    found = match_references([*theories, *scenario_refs], bibliography)
    seen = {(_ascii(_surname(r.authors)).lower(), r.year) for r in found}
    keys = {r.key for r in found}
    for text in scenario_refs:
        ref = parse_reference(text)
        if ref is None or (_ascii(_surname(ref.authors)).lower(), ref.year) in seen:
            continue
        key, n = ref.key, 1
        while key in keys:
            n += 1
            key = f"{ref.key}-{n}"
        seen.add((_ascii(_surname(ref.authors)).lower(), ref.year))
        keys.add(key)
        found.append(ref.model_copy(update={"key": key}))
    return found
