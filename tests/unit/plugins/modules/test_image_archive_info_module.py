# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""image_archive_info on archives laid out as docker 20.10, OCI-style docker 25+ and compressed."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import subprocess
import json
import tarfile
from pathlib import Path

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.image_archive import detect_compression, normalize_image_id
from ansible_collections.u7s.cluster.plugins.modules import image_archive_info

HEX = "3f" * 32


COMPRESSORS = {"none": lambda data: data, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}


def write_archive(path: Path, manifest: object, compress: bool | str = False) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("layer.tar", b"x" * 1024), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    compression = compress if isinstance(compress, str) else ("gzip" if compress else "none")
    path.write_bytes(COMPRESSORS[compression](buffer.getvalue()))
    return path


@pytest.mark.parametrize("config", [f"{HEX}.json", f"blobs/sha256/{HEX}"])
@pytest.mark.parametrize("compress", [False, True])
def test_reads_id_and_tags(tmp_path, run_module, config, compress):
    archive = write_archive(
        tmp_path / "node.tar", [{"Config": config, "RepoTags": ["localhost/u7s/node:v1.36.4"]}], compress
    )
    result = run_module(image_archive_info.main, {"path": str(archive)})
    assert result["changed"] is False
    assert result["images"] == [{"id": f"sha256:{HEX}", "repo_tags": ["localhost/u7s/node:v1.36.4"]}]


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_reports_the_compression(tmp_path, run_module, compression):
    """The role ships an archive compressed already as it is, and zstd-compresses one that is not."""
    archive = write_archive(tmp_path / "node.tar", [{"Config": f"{HEX}.json"}], compression)
    result = run_module(image_archive_info.main, {"path": str(archive)})
    assert result["compression"] == compression
    assert result["images"][0]["id"] == f"sha256:{HEX}"


def test_zstd_archive_is_refused_with_the_fix(tmp_path, run_module):
    archive = write_archive(tmp_path / "node.tar", [{"Config": f"{HEX}.json"}])
    # The role's own command line, where the controller has the tool (make deps installs it).
    zstd = subprocess.run(["zstd", "-q", "-3", str(archive), "-o", str(tmp_path / "node.tar.zst")], check=False)
    if zstd.returncode != 0:
        pytest.skip("no zstd on this machine")
    result = run_module(image_archive_info.main, {"path": str(tmp_path / "node.tar.zst")})
    assert result["failed"] is True and "zstd-compressed: give the uncompressed archive" in result["msg"]


@pytest.mark.parametrize(("head", "expected"), [
    (b"\x1f\x8b\x08\x00", "gzip"),
    (b"BZh91AY", "bzip2"),
    (b"\xfd7zXZ\x00\x00", "xz"),
    (b"\x28\xb5\x2f\xfd\x04", "zstd"),
    (b"manifest.json\x00", "none"),  # a tar starts with its first member's name
    (b"", "none"),
    (b"\x1f\x8b", "none"),  # too short to be gzip
])
def test_detect_compression(head, expected):
    assert detect_compression(head) == expected


def test_untagged_image_has_no_tags(tmp_path, run_module):
    archive = write_archive(tmp_path / "a.tar", [{"Config": f"{HEX}.json", "RepoTags": None}])
    assert run_module(image_archive_info.main, {"path": str(archive)})["images"][0]["repo_tags"] == []


@pytest.mark.parametrize(
    "manifest, message",
    [([], "lists no image"), ([{"Layers": []}], "without Config"), ([{"Config": "nohex.json"}], "no image config digest")],
)
def test_bad_manifests_fail_clearly(tmp_path, run_module, manifest, message):
    archive = write_archive(tmp_path / "bad.tar", manifest)
    result = run_module(image_archive_info.main, {"path": str(archive)})
    assert result["failed"] is True
    assert message in result["msg"] and str(archive) in result["msg"]


def test_not_an_archive(tmp_path, run_module):
    path = tmp_path / "plain.txt"
    path.write_text("hello")
    result = run_module(image_archive_info.main, {"path": str(path)})
    assert result["failed"] is True and "not a (compressed) tar archive" in result["msg"]


def test_archive_without_manifest(tmp_path, run_module):
    path = tmp_path / "oci-only.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    result = run_module(image_archive_info.main, {"path": str(path)})
    assert result["failed"] is True and "no manifest.json" in result["msg"]


def test_normalize_image_id():
    assert normalize_image_id(HEX) == f"sha256:{HEX}"
    assert normalize_image_id(f"sha256:{HEX}\n") == f"sha256:{HEX}"
