"""Sizing prompts to the model's context: a token estimate, and whether a model gets the full brief.

The embedded model holds 4,096 tokens and writes worse the more it reads, so it gets short
prompts; a capable model behind `--llm` holds far more and needs the whole study (hypotheses,
mechanics, every fact with its value) to write correctly. The client says how much it holds
(`LLMClient.context_tokens`); a stand-in without the property is treated as the small one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

SMALL_CONTEXT = 4096  # the embedded server's n_ctx (llms.embedded.N_CTX), and the safe assumption
RICH_CONTEXT = 16384  # from this size on a model gets the full brief: 4k-8k models are small ones
CHARS_PER_TOKEN = 3.5  # English prose and Markdown through BPE tokenizers: a little under 4, so we over-count
MESSAGE_OVERHEAD = 8  # role markers and separators of a chat template, per message


def context_of(llm) -> int:
    """The context size, in tokens, of the model behind `llm`."""
    return int(getattr(llm, "context_tokens", SMALL_CONTEXT) or SMALL_CONTEXT)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    """An upper-leaning estimate of a chat prompt's tokens."""
    return sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages)


def fits(messages: Iterable[Mapping[str, str]], max_tokens: int, context: int) -> bool:
    """Whether the prompt and an answer of `max_tokens` fit the context."""
    return prompt_tokens(messages) + max_tokens <= context
