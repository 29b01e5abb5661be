"""Tools the agent's LLM calls: typed async functions whose signatures and docstrings are their schemas.

One registry (:mod:`tools.registry`: the :func:`tool` decorator, :class:`Tool` with its
:data:`ToolKind`, :class:`ToolEnv` -- what a tool sees -- and :class:`ToolOutcome` -- what it returns)
serves both media: :mod:`tools.segmentation` holds the four image tools (:data:`ALL_TOOLS`),
:mod:`tools.video_tools` the four video tools (:data:`VIDEO_TOOLS`). The package imports no web
framework and nothing from serving, eval or the CLI.
"""

from tools.registry import TOOL_KINDS, Tool, ToolEnv, ToolKind, ToolOutcome, by_name, specs, tool
from tools.segmentation import (
    ALL_TOOLS,
    examine_each_mask,
    report_no_mask,
    segment_phrase,
    select_masks_and_return,
    tools_for,
)
from tools.video_tools import VIDEO_TOOLS, video_tools_for

__all__ = [
    "ALL_TOOLS",
    "TOOL_KINDS",
    "VIDEO_TOOLS",
    "Tool",
    "ToolEnv",
    "ToolKind",
    "ToolOutcome",
    "by_name",
    "examine_each_mask",
    "report_no_mask",
    "segment_phrase",
    "select_masks_and_return",
    "specs",
    "tool",
    "tools_for",
    "video_tools_for",
]
