"""The project's exceptions, one module for all packages.

Three families, kept apart because callers react to them differently:

* :class:`InputError` -- the *user's* input is wrong (a corrupt image, an empty phrase). Nothing is
  lost: fix the input and call again. HTTP front ends map these to 4xx.
* :class:`ModelRetry` -- raised inside an agent tool to tell the *language model* that its call was
  wrong (an unknown mask id, a malformed argument). The agent shows the message to the model and
  lets it try again; it never reaches the user.
* :class:`UsageError` -- the *developer* called the library wrongly (bad argument types, a closed
  engine). A bug in calling code, not something a retry fixes.
* :class:`RunFailed` -- the run could not finish (the LLM endpoint kept timing out, the step budget
  ran out without an answer). Carries what is known about the failure.

:class:`CheckpointError` covers everything that stops weights from loading, with a message that says
what to do about it.
"""

from __future__ import annotations


class Sam3AgentError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(Sam3AgentError, ValueError):
    """The caller's input is invalid; the message names what was wrong."""


class ImageError(InputError):
    """An image could not be read, is empty, or is larger than the configured pixel limit."""


class PromptError(InputError):
    """A text phrase, point, box or mask prompt is invalid."""


class AdmissionError(InputError):
    """A request would cost more than a configured budget (pixels, phrases, boxes or estimated memory).

    Raised before the request reaches the engine's worker, or (for the number of masks, known only
    after the model ran) for that request alone. HTTP front ends answer 413 (or 422).

    Attributes:
        limit: the name of the limit, as in :class:`sam3_core.admission.AdmissionLimits`
            (``"max_pixels"``, ``"max_phrases"``, ``"max_exemplar_boxes"``, ``"max_request_bytes"``).
        value: what the request needed. maximum: the limit's value.
    """

    def __init__(self, message: str, *, limit: str, value: float, maximum: float) -> None:
        super().__init__(message)
        self.limit, self.value, self.maximum = limit, value, maximum


class ImageTooLarge(ImageError, AdmissionError):
    """An image over the pixel limit (``limit == "max_pixels"``): both an :class:`ImageError` and an
    :class:`AdmissionError`, so front ends can answer every budget refusal alike (413)."""


class VideoError(InputError):
    """A video cannot be read or has no frames, or a frame index, session or object id is unknown."""


class CheckpointError(Sam3AgentError, RuntimeError):
    """Model weights could not be loaded (gated repo, missing token, no network, no disk, bad folder)."""


class UsageError(Sam3AgentError, TypeError):
    """The library was called incorrectly by the developer (a bug in the calling code)."""


class ModelRetry(Sam3AgentError):
    """Raised by an agent tool to ask the language model to correct its call and try again."""


class RunFailed(Sam3AgentError, RuntimeError):
    """An agent run ended without an answer; ``cause`` says why in a few words."""

    def __init__(self, message: str, *, cause: str = "error") -> None:
        super().__init__(message)
        self.cause = cause
