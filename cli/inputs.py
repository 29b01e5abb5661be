"""Command-line inputs checked before any model loads: images, folders, globs, URLs, output paths.

Every check raises :class:`~sam3_core.errors.InputError` with a message that says what was wrong and
what to do, so a typo costs a fraction of a second instead of a model load.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from sam3_core.errors import InputError

#: File name endings taken as images when a folder or glob is expanded.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ImageInput:
    """One image of a run: ``source`` as given (a path or URL) and the output ``name`` derived from it."""

    source: str
    name: str


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def looks_like_image(text: str) -> bool:
    """True for a string that is an existing path, a glob, a URL or ends like an image file name."""
    return (is_url(text) or (any(c in text for c in _GLOB_CHARS) and bool(glob.glob(text)))
            or Path(text).expanduser().exists() or Path(text).suffix.lower() in IMAGE_SUFFIXES)


def check_url(url: str) -> str:
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"{url!r} is not a well-formed http(s) URL (expected http://host/path)")
    return url


def check_image_file(path: Path) -> None:
    """A cheap header check: the file opens as an image (its pixels are not decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 -- reading the header is the check
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image PIL can read (JPEG, PNG, WebP, TIFF, BMP, ...)") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _expand(spec: str) -> list[str]:
    """The image paths one argument names: a URL, a file, every image in a folder, or a glob's matches."""
    if is_url(spec):
        return [check_url(spec)]
    path = Path(spec).expanduser()
    if path.is_dir():
        found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise InputError(f"the folder {spec} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    if any(c in spec for c in _GLOB_CHARS) and not path.exists():
        found = sorted(p for p in glob.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
        if not found:
            raise InputError(f"no file matches the pattern {spec!r}")
        return found
    if not path.exists():
        raise InputError(f"no such image: {spec} (give an image file, a folder of images, a glob such as "
                         "'imgs/*.jpg' in quotes, or an http(s) URL)")
    if not path.is_file():
        raise InputError(f"{spec} is not a regular file")
    return [str(path)]


def expand_images(specs: list[str], *, check_files: bool = True) -> list[ImageInput]:
    """Expand files, folders, globs and URLs into the run's images, each with a unique output name.

    Files named directly are header-checked here (``check_files``); a bad file met while expanding a
    folder or glob is left for the run, where it fails only itself.
    """
    if not specs:
        raise InputError("no image given; name image files, folders, globs or URLs")
    sources: list[str] = []
    for spec in specs:
        found = _expand(spec)
        if check_files and len(found) == 1 and found[0] == str(Path(spec).expanduser()):
            check_image_file(Path(found[0]))
        sources.extend(s for s in found if s not in sources)
    return _named(sources)


def _named(sources: list[str]) -> list[ImageInput]:
    """Output names from file stems; a stem met twice gets ``_2``, ``_3``... so no output is overwritten."""
    seen: dict[str, int] = {}
    inputs = []
    for source in sources:
        stem = Path(urlparse(source).path).stem if is_url(source) else Path(source).stem
        stem = stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        inputs.append(ImageInput(source, stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"))
    return inputs


def check_writable_file(out: str) -> None:
    """An output file path: its folder exists (or can be made) and is writable; '-' (stdout) passes."""
    if out == "-":
        return
    path = Path(out).expanduser()
    if path.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name (or '-' for stdout)")
    check_writable_folder(str(path.parent), what=f"the folder of {out}")


def check_writable_folder(out: str, *, what: str | None = None) -> None:
    """An output folder: it exists and is writable, or its nearest existing parent is."""
    path = Path(out).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise InputError(f"{what or out} is a file, not a folder; give a folder for the outputs")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise InputError(f"cannot write to {what or out}: {existing} is not writable")


def check_query(query: str | None) -> str:
    text = (query or "").strip()
    if not text:
        raise InputError("the query is empty; say what to segment, e.g. \"the dog on the left\"")
    return text


def check_phrases(phrases: list[str]) -> list[str]:
    """Phrases as given; an empty phrase or one that names an existing file or an image is refused."""
    for phrase in phrases:
        if not phrase.strip():
            raise InputError("an empty phrase was given; phrases are short noun phrases such as 'red car'")
        if looks_like_image(phrase):
            raise InputError(f"{phrase!r} looks like an image, not a phrase; to segment several images, give them "
                             "all first and each phrase with -p/--phrase, e.g. "
                             "`segment-phrase a.jpg b.jpg -p dog -p 'red car'`")
    return phrases


def check_video(path: str) -> str:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"no such video: {path} (give a video file such as clip.mp4, or a folder of frames)")
    return str(p)
