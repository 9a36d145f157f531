"""Photos attached to reports: checked by size and by their bytes, stored by content hash.

A photo is accepted when it is at most `max_bytes` long and its first bytes are a JPEG, PNG or WebP
signature; the content type the client declares is not trusted. It is stored as
`<data_dir>/photos/<incident_id>/<sha256>.<ext>` and referenced from the incident's details by a
dict: {"path" (relative to data_dir), "sha256", "bytes", "content_type", "name"}.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = "var"
DEFAULT_MAX_PHOTO_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_PHOTOS = 5
PHOTOS_DIR = "photos"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class PhotoError(Exception):
    """A photo cannot be accepted; `status` is the HTTP status to answer and `field` the form field."""

    def __init__(self, status: int, message: str, *, field: str = "photos") -> None:
        self.status = status
        self.field = field
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class PhotoSettings:
    """Where photos go and how large and how many they may be."""

    data_dir: Path
    max_bytes: int = DEFAULT_MAX_PHOTO_BYTES
    max_count: int = DEFAULT_MAX_PHOTOS


def photo_settings(settings: Any) -> PhotoSettings:
    """The photo settings of an api.settings.Settings (defaults for the fields it does not have)."""
    return PhotoSettings(
        data_dir=Path(getattr(settings, "data_dir", None) or DEFAULT_DATA_DIR),
        max_bytes=int(getattr(settings, "max_photo_bytes", None) or DEFAULT_MAX_PHOTO_BYTES),
        max_count=int(getattr(settings, "max_photos", None) or DEFAULT_MAX_PHOTOS),
    )


@dataclass(frozen=True, slots=True)
class Photo:
    """A checked photo, not yet stored."""

    data: bytes
    sha256: str
    content_type: str
    ext: str
    name: str | None = None

    def ref(self, incident_id: str) -> dict[str, Any]:
        """Its reference in the incident's details."""
        out: dict[str, Any] = {
            "path": photo_path(incident_id, self.sha256, self.ext),
            "sha256": self.sha256,
            "bytes": len(self.data),
            "content_type": self.content_type,
        }
        if self.name:
            out["name"] = self.name
        return out


def sniff(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) from the signature at the start of `data`; None when not an accepted image."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg", "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png", "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def check_photo(data: bytes, *, max_bytes: int = DEFAULT_MAX_PHOTO_BYTES, name: str | None = None, index: int = 0) -> Photo:
    """Check one photo; raise PhotoError 413 (too large), 415 (not JPEG/PNG/WebP) or 422 (empty)."""
    label = f"photos[{index}]" + (f" ({name!r})" if name else "")
    if len(data) > max_bytes:
        raise PhotoError(413, f"{label}: {len(data)} bytes is over the limit of {max_bytes} bytes per photo")
    if not data:
        raise PhotoError(422, f"{label}: empty file")
    kind = sniff(data)
    if kind is None:
        raise PhotoError(415, f"{label}: not a JPEG, PNG or WebP image (checked by its content, not its name or declared type)")
    clean_name = Path(name).name[:200] if name else None
    return Photo(data, hashlib.sha256(data).hexdigest(), kind[0], kind[1], clean_name or None)


def check_photos(files: Sequence[tuple[str | None, bytes]], settings: PhotoSettings) -> list[Photo]:
    """Check (name, bytes) pairs; the same photo sent twice is kept once."""
    if len(files) > settings.max_count:
        raise PhotoError(422, f"photos: {len(files)} files, at most {settings.max_count} are accepted")
    out: dict[str, Photo] = {}
    for i, (name, data) in enumerate(files):
        photo = check_photo(data, max_bytes=settings.max_bytes, name=name, index=i)
        out.setdefault(photo.sha256, photo)
    return list(out.values())


def photo_path(incident_id: str, sha256: str, ext: str) -> str:
    """The photo's path relative to data_dir (POSIX separators)."""
    return f"{PHOTOS_DIR}/{incident_id}/{sha256}.{ext}"


def store_photos(data_dir: Path, incident_id: str, photos: Sequence[Photo], *, keep_existing: bool = False) -> list[Path]:
    """Write photos (atomically, each to a temporary file then renamed); return the files written.

    On a failure the incident's photo folder is removed (a new report's), unless `keep_existing`
    (photos added to an incident that has some already: only the files of this call are removed).
    """
    written: list[Path] = []
    try:
        for photo in photos:
            target = data_dir / photo_path(incident_id, photo.sha256, photo.ext)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(photo.data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(target)
    except BaseException:
        if keep_existing:
            for path in written:
                path.unlink(missing_ok=True)
        else:
            remove_photos(data_dir, incident_id)
        raise
    return written


def remove_photos(data_dir: Path, incident_id: str) -> None:
    """Delete an incident's photo folder (used when the report's transaction fails)."""
    folder = data_dir / PHOTOS_DIR / incident_id
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def find_photo(data_dir: Path, incident_id: str, sha256: str) -> tuple[Path, str] | None:
    """(file, content type) of a photo stored for an incident, found by its hash in the incident's own folder.

    Never from a path or type stored with the reference (those came from clients): the folder and
    name are rebuilt here, the file must hash to `sha256` and sniff as an accepted image.
    """
    if not re.fullmatch(SHA256_PATTERN.strip("^$"), sha256) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", incident_id):
        return None
    root = (data_dir / PHOTOS_DIR).resolve()
    for ext in ("jpg", "png", "webp"):
        path = (root / incident_id / f"{sha256}.{ext}").resolve()
        if root not in path.parents or not path.is_file():
            continue
        data = path.read_bytes()
        kind = sniff(data)
        if kind is not None and kind[1] == ext and hashlib.sha256(data).hexdigest() == sha256:
            return path, kind[0]
    return None
