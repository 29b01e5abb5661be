"""Kept for older imports: the synthetic datasets and :class:`AgentScript` live in :mod:`eval.testing`."""

from eval.testing import (  # noqa: F401
    REASONSEG_SAMPLES,
    AgentScript,
    omnilabel_gt,
    tool_call,
    write_omnilabel,
    write_reasonseg,
    write_refcoco,
)
