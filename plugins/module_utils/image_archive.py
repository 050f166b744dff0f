# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Read the identity of an image archive (``docker save`` / ``podman save`` output) without an engine."""

from __future__ import annotations

import json
import re
import tarfile
import typing as t

_HEX64 = re.compile(r"[0-9a-f]{64}")


# Leading bytes of each compression the engines detect when loading an archive
# (moby's DetectCompression, containers/image's pkg/compression).
_MAGIC = (
    ("gzip", b"\x1f\x8b\x08"),
    ("bzip2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
)


class ImageArchiveError(Exception):
    """The file is not an image archive this collection can read."""


def detect_compression(head: bytes) -> str:
    """``none``, ``gzip``, ``bzip2``, ``xz`` or ``zstd``, from the first bytes of a file."""
    for name, magic in _MAGIC:
        if head.startswith(magic):
            return name
    return "none"


def _config_id(config_path: str) -> str:
    # docker 20.10 names the config "<hex>.json"; OCI layouts (docker 25+,
    # podman) name it "blobs/sha256/<hex>". Either way the hex is the image ID.
    match = _HEX64.search(config_path)
    if not match:
        raise ImageArchiveError("manifest.json names no image config digest: %r" % config_path)
    return "sha256:" + match.group(0)


def file_compression(path: str) -> str:
    """The compression of the file at ``path`` (see ``detect_compression``)."""
    try:
        with open(path, "rb") as opened:
            return detect_compression(opened.read(8))
    except OSError as exc:
        raise ImageArchiveError("cannot read: %s" % exc) from exc


def read_manifest(archive: t.IO[bytes] | str) -> list[dict[str, t.Any]]:
    """The images an archive holds: ``[{'id': 'sha256:…', 'repo_tags': [...]}]``.

    ``archive`` is a path or an open binary file; gzip, bzip2 and xz
    compression are recognised by ``tarfile``, zstd is not (the standard
    library has no zstd before Python 3.14).
    """
    if isinstance(archive, str) and file_compression(archive) == "zstd":
        raise ImageArchiveError("zstd-compressed: give the uncompressed archive (or gzip, bzip2 or xz)")
    try:
        opened = tarfile.open(archive, mode="r:*") if isinstance(archive, str) else tarfile.open(fileobj=archive, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ImageArchiveError("not a (compressed) tar archive: %s" % exc) from exc
    with opened:
        try:
            member = opened.extractfile("manifest.json")
        except KeyError:
            member = None
        if member is None:
            raise ImageArchiveError("no manifest.json: not docker-archive (docker save) output")
        try:
            manifest = json.load(member)
        except ValueError as exc:
            raise ImageArchiveError("manifest.json is not JSON: %s" % exc) from exc
    if not isinstance(manifest, list) or not manifest:
        raise ImageArchiveError("manifest.json lists no image")
    images = []
    for entry in manifest:
        if not isinstance(entry, dict) or "Config" not in entry:
            raise ImageArchiveError("manifest.json entry without Config: %r" % (entry,))
        images.append({"id": _config_id(entry["Config"]), "repo_tags": list(entry.get("RepoTags") or [])})
    return images


def normalize_image_id(image_id: str) -> str:
    """Engines report IDs with or without the ``sha256:`` prefix; compare them with it."""
    image_id = image_id.strip()
    return image_id if image_id.startswith("sha256:") else "sha256:" + image_id
