"""Usage accounting of LLM calls: token and call counts, added up per client and per query.

A dataclass of plain counters that needs nothing of the OpenAI SDK; :mod:`agent.llm` re-exports it (import it
from there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class Usage:
    """Token and call counts; ``retries`` counts failed attempts that were retried."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    retries: int = 0
    failures: int = 0

    def add(self, other: Usage) -> None:
        """Add ``other``'s counts to this one."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


