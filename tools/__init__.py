"""Tools the agent's LLM calls: typed async functions whose signatures and docstrings are their schemas.

``tools.segmentation`` holds the four segmentation tools; ``tools.registry`` the :func:`tool`
decorator, :class:`ToolEnv` (what a tool sees) and :class:`ToolOutcome` (what it returns).
"""

from tools.registry import Tool, ToolEnv, ToolOutcome, tool
from tools.segmentation import (
    ALL_TOOLS,
    examine_each_mask,
    report_no_mask,
    segment_phrase,
    select_masks_and_return,
    tools_for,
)

__all__ = [
    "ALL_TOOLS",
    "Tool",
    "ToolEnv",
    "ToolOutcome",
    "examine_each_mask",
    "report_no_mask",
    "segment_phrase",
    "select_masks_and_return",
    "tool",
    "tools_for",
]
