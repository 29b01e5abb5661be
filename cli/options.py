"""Option groups shared by every ``sam3-agent`` command, each defined once.

Defaults come from the settings dataclasses (:class:`~agent.settings.AgentSettings`,
:class:`~agent.settings.VideoSettings`, :class:`~agent.llm.LLMConfig`, :mod:`sam3_core.defaults`) and
are shown in ``--help``. The same setting has the same flag in every command; older spellings
(``--score-threshold``, ``--no-verification``) are kept as hidden aliases.

Only light modules are imported here (no torch, transformers or web framework), so building the
parser and printing ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from agent.settings import AgentSettings, VideoSettings
from sam3_core.defaults import DEFAULT_MODEL_ID, MASK_THRESHOLD, SCORE_THRESHOLD
from sam3_core.images import DEFAULT_MAX_PIXELS

_AGENT = AgentSettings()
_VIDEO = VideoSettings()


def unit_interval(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a value in [0, 1]") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]; scores and probabilities lie in [0, 1]")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def _alias(group, flag: str, dest: str, **kwargs) -> None:
    """An old spelling of an option: accepted, not shown in --help, no default of its own."""
    group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_model_options(parser: argparse.ArgumentParser, *, max_pixels: bool = True) -> argparse._ArgumentGroup:
    """--model, --device, --dtype (and --max-pixels): which SAM 3 and where it runs."""
    group = parser.add_argument_group("SAM 3 model")
    group.add_argument("--model", default=DEFAULT_MODEL_ID, metavar="ID_OR_PATH",
                       help="hub id (gated: `hf auth login` or HF_TOKEN) or a local checkpoint folder, e.g. one "
                            "written by `sam3-agent make-tiny-checkpoint DIR` (default: %(default)s)")
    group.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    group.add_argument("--dtype", choices=["bf16", "fp16", "fp32", "bfloat16", "float16", "float32"],
                       metavar="{bf16,fp16,fp32}", help="weights' precision (default: bf16 on GPU, fp32 on CPU)")
    if max_pixels:
        group.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                           help="refuse larger images (default: %(default)s)")
    return group


def add_threshold_options(parser: argparse.ArgumentParser, *, mask: bool = True,
                          default: float | None = SCORE_THRESHOLD) -> None:
    """--threshold (alias --score-threshold) and --mask-threshold."""
    group = parser.add_argument_group("thresholds")
    shown = "the checkpoint's" if default is None else "%(default)s"
    group.add_argument("--threshold", type=unit_interval, default=default, metavar="T",
                       help=f"keep instances scoring above T, in [0, 1] (default: {shown})")
    _alias(group, "--score-threshold", "threshold", type=unit_interval)
    if mask:
        group.add_argument("--mask-threshold", type=unit_interval, default=MASK_THRESHOLD, metavar="T",
                           help="mask probability above which a pixel is foreground (default: %(default)s)")


def add_video_threshold_options(parser: argparse.ArgumentParser) -> None:
    """--threshold and --new-threshold for the video engine (None keeps the checkpoint's values)."""
    add_threshold_options(parser, mask=False, default=None)
    parser.add_argument("--new-threshold", type=unit_interval, metavar="T",
                        help="score a detection needs to start a new object (default: the checkpoint's)")


def add_llm_options(parser: argparse.ArgumentParser, *, required_url: bool = True) -> None:
    """--llm-url, --llm-model, --llm-api-key, --tool-protocol, --llm-timeout, --llm-retries."""
    from agent.llm_config import LLMConfig
    from agent.tool_protocol import PROTOCOLS

    llm = LLMConfig(api_key="")
    group = parser.add_argument_group("multimodal LLM (OpenAI-compatible endpoint)")
    group.add_argument("--llm-url", default=llm.base_url if required_url else None, metavar="URL",
                       help="endpoint, e.g. vLLM's http://HOST:PORT/v1 "
                            + ("(default: %(default)s)" if required_url else "(without it the agent is off)"))
    group.add_argument("--llm-model", default=llm.model, help="served model name (default: the endpoint's first)")
    group.add_argument("--llm-api-key", help="API key (default: $OPENAI_API_KEY)")
    group.add_argument("--tool-protocol", choices=PROTOCOLS, default=llm.tool_protocol,
                       help="text: tool calls as JSON in <tool_call> tags, works on any endpoint; native: the "
                            "endpoint's function calling (default: %(default)s)")
    group.add_argument("--llm-timeout", type=positive_float, default=llm.timeout_s, metavar="S",
                       help="seconds per LLM request (default: %(default)s)")
    group.add_argument("--llm-retries", type=int, default=llm.max_retries, metavar="N",
                       help="retries on 429/5xx/timeouts/connection errors, with backoff (default: %(default)s)")


def add_agent_options(parser: argparse.ArgumentParser, *, verification: bool = True) -> None:
    """--max-steps and --no-verify (alias --no-verification)."""
    group = parser.add_argument_group("agent")
    group.add_argument("--max-steps", type=positive_int, default=_AGENT.max_steps, metavar="N",
                       help="most LLM replies per query (default: %(default)s)")
    if verification:
        group.add_argument("--no-verify", action="store_true",
                           help="do not offer the per-mask verification tool (examine_each_mask)")
        _alias(group, "--no-verification", "no_verify", action="store_true")


def add_video_agent_options(parser: argparse.ArgumentParser) -> None:
    """--max-frames, --keyframes, --no-refine (defaults from :class:`VideoSettings`)."""
    group = parser.add_argument_group("video agent")
    group.add_argument("--max-frames", type=positive_int, default=_VIDEO.max_frames, metavar="N",
                       help="frames tracked per phrase while exploring (default: all)")
    group.add_argument("--keyframes", type=positive_int, default=_VIDEO.keyframes, metavar="N",
                       help="keyframes shown to the model (default: %(default)s)")
    group.add_argument("--no-refine", action="store_true", help="do not offer refine_masklet")


def llm_config(args: argparse.Namespace):
    """The :class:`~agent.llm.LLMConfig` of the parsed LLM options (None when no --llm-url)."""
    import os

    from agent.llm_config import LLMConfig

    if not args.llm_url:
        return None
    api_key = args.llm_api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
    return LLMConfig(base_url=args.llm_url, model=args.llm_model, api_key=api_key, tool_protocol=args.tool_protocol,
                     timeout_s=args.llm_timeout, max_retries=args.llm_retries)
