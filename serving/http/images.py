"""Images into the server: uploads, base64 (or ``data:`` URLs) and, when allowed, ``http(s)`` URLs.

All three end up as encoded bytes; :meth:`ImageIntake.check` reads only the header to refuse an image
over the pixel limit (HTTP 413) before anything is decoded, and :meth:`ImageIntake.decode` decodes it
off the event loop into a :class:`~sam3_core.images.LoadedImage`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from sam3_core.errors import ImageError
from sam3_core.images import LoadedImage, load_image
from serving.http.errors import ApiError, TooLarge
from serving.http.schemas import ImageSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageIntake:
    """Limits for incoming images (see :class:`serving.config.ServeSettings`)."""

    max_pixels: int
    max_bytes: int
    allow_urls: bool = False
    url_max_bytes: int = 20 << 20
    url_timeout_s: float = 10.0

    async def bytes_of(self, spec: ImageSpec) -> bytes:
        """The encoded image of a JSON ``image`` field."""
        if spec.base64 is not None:
            return decode_base64(spec.base64, self.max_bytes)
        assert spec.url is not None
        return await self.fetch(spec.url)

    async def fetch(self, url: str) -> bytes:
        """GET ``url`` with the size cap and timeout; 400 when URL images are off or the fetch fails."""
        if not self.allow_urls:
            raise ApiError(400, "image URLs are disabled on this server; send the image as an upload or as "
                                "base64 (or start the server with --allow-url-images)", "url_images_disabled")
        if urlsplit(url).scheme not in ("http", "https"):
            raise ApiError(400, f"only http and https image URLs are supported, got {url[:80]!r}", "bad_url")
        try:
            return await self._download(url)
        except httpx.TimeoutException as exc:
            raise ApiError(400, f"fetching the image URL took longer than {self.url_timeout_s:g}s",
                           "url_fetch_failed") from exc
        except httpx.HTTPError as exc:
            raise ApiError(400, f"could not fetch the image URL: {exc}", "url_fetch_failed") from exc

    async def _download(self, url: str) -> bytes:
        timeout = httpx.Timeout(self.url_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=3) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ApiError(400, f"the image URL answered HTTP {response.status_code}", "url_fetch_failed")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.url_max_bytes:
                raise TooLarge(f"the image at the URL is {declared} bytes, over the limit of {self.url_max_bytes}")
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > self.url_max_bytes:
                    raise TooLarge(f"the image at the URL is over the limit of {self.url_max_bytes} bytes")
                chunks.append(chunk)
        return b"".join(chunks)

    def check(self, data: bytes) -> None:
        """Refuse empty, unreadable or too many-pixel images from their header alone."""
        if not data:
            raise ImageError("the image is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"cannot read the image: {exc}") from exc
        if width * height > self.max_pixels:
            raise TooLarge(f"the image is {width}x{height} = {width * height} pixels, over this server's limit of "
                           f"{self.max_pixels}")

    async def decode(self, data: bytes) -> LoadedImage:
        """Check and decode ``data`` in a worker thread."""
        self.check(data)
        return await asyncio.to_thread(load_image, data, self.max_pixels)

    async def load(self, spec: ImageSpec) -> LoadedImage:
        """:meth:`bytes_of` then :meth:`decode`."""
        return await self.decode(await self.bytes_of(spec))


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Bytes of a base64 string or ``data:...;base64,`` URL (400 when it is not valid base64)."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise ImageError("a data: URL image must be base64-encoded (data:image/png;base64,...)")
    if len(text) * 3 // 4 > max_bytes:
        raise TooLarge(f"the base64 image is over the limit of {max_bytes} bytes")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"image.base64 is not valid base64: {exc}") from exc
