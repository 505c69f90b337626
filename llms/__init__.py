"""LLM access for every backend through one OpenAI-SDK client (DESIGN.md §4).

    from llms import LLMSet
    models = LLMSet.from_options(llm="embedded", run_folder=run.path)
    plan = models.researcher.complete(messages, schema=ResearchPlan)
    decisions = models.agents.complete_many(requests)
    manifest["llm"] = models.snapshot()

Names are imported on first use: the server watchdog (`python -m llms.watchdog`) imports
this package too, and must not pay for the openai SDK.
"""

from __future__ import annotations

from societas.lazy import lazy_getattr

_EXPORTS = {
    "ROLES": "llms.accounting",
    "Accounting": "llms.accounting",
    "RoleUsage": "llms.accounting",
    "BackendSpec": "llms.backends",
    "Dialect": "llms.backends",
    "Kind": "llms.backends",
    "parse_backend": "llms.backends",
    "ResponseCache": "llms.cache",
    "cache_key": "llms.cache",
    "LLMClient": "llms.client",
    "LLMRequest": "llms.client",
    "Backend": "llms.endpoints",
    "open_backend": "llms.endpoints",
    "LLMError": "llms.errors",
    "LLMOutputInvalid": "llms.errors",
    "LLMRejected": "llms.errors",
    "LLMUnavailable": "llms.errors",
    "RetryPolicy": "llms.retry",
    "LLMSet": "llms.roles",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
