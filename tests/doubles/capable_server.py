"""A test double answering as a capable model would: valid structured output, and prose that cites the
facts it was shown by placeholder, writes no number of its own and stays on the request's section.

Beside `SchemaAwareServer` (which answers prose as a tiny model does: invented numbers, a missing
fact, a heading), it shows that what a capable model writes from a good prompt survives the gate,
and it records each request so a test can read what the model was given.
"""

from __future__ import annotations

import re
from typing import Any

from tests.doubles.schema_server import SchemaAwareServer
from tests.doubles.scripted_openai_server import Step, reply

GOOD_REVIEW = {"soundness": 4, "insight": 4, "structure": 5, "content": 4, "utility": 4, "overall": 4}
_PROSE = "\0capable prose\0"  # what SchemaAwareServer answers prose with, replaced per request below


class CapableServer(SchemaAwareServer):
    """Scripted steps first; then schema requests get a valid instance (reviews score 4/5) and prose
    requests a short paragraph citing the first two placeholders the prompt offered."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, choose=GOOD_REVIEW, prose=_PROSE, **kw)

    def _next_step(self, body: dict[str, Any]) -> Step:
        step = super()._next_step(body)
        return reply(capable_prose(body)) if step.content == _PROSE else step


def capable_prose(body: dict[str, Any]) -> str:
    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    cited = list(dict.fromkeys(re.findall(r"\{\{F\d+\}\}", prompt.partition("Facts you may cite")[2])))[:2]
    section = re.search(r"^Section: (.+)$", prompt, re.MULTILINE)
    name = section.group(1).lower() if section else "this section"
    return (f"In {name}, the simulation shows a clear pattern across the conditions. "
            f"The measured outcome reached {' and '.join(cited) or 'the reported values'}, "
            "which bears directly on the research question.")
