"""The :class:`Media` protocol: what the shared agent graph asks of the medium a run works on.

The graph's nodes, router, retries, limits, trace, LLM client and tool protocol are the same for every
medium; the run context's ``media`` supplies the rest. Image and video are peers:
:data:`agent.media.image.IMAGE_MEDIA` and :data:`agent.media.video.VIDEO_MEDIA`. A new medium (say, a
3-D volume) is one more class with these six methods, its tools (each with a
:data:`~tools.registry.ToolKind`) and a run context (:class:`agent.context.RunContext`); the graph
does not change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.state import State
    from tools.registry import Tool


class Media(Protocol):
    """The medium's hooks; ``ctx`` is the run context (:class:`agent.context.RunContext`) of the medium."""

    def key(self, ctx: Any) -> str:
        """The thread key: the content key of the run's image or video. ``State.image_key`` must equal it,
        so a thread never changes medium or content."""
        ...

    def tools(self, ctx: Any) -> list[Tool]:
        """The tools offered to the model, in the order they are listed."""
        ...

    def opening(self, state: State, ctx: Any) -> list[dict[str, Any]]:
        """The fixed start of every conversation: the system prompt, then the query with the raw input."""
        ...

    def result_parts(self, state: State, ctx: Any) -> list[dict[str, Any]]:
        """Image parts showing the current candidates ([] when there are none); they go with the latest
        pruning tool result (the anchor), so only the newest overlay is ever in the conversation."""
        ...

    def earlier_text(self, state: State) -> str:
        """The note sent with :meth:`result_parts` when a query starts on a thread with candidates."""
        ...

    def before_model_call(self, state: State, ctx: Any) -> None:
        """Start background work before a main-loop call (the image medium prepares verification)."""
        ...
