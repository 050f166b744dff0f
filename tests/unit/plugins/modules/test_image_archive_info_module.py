# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""image_archive_info on archives laid out as docker 20.10, OCI-style docker 25+ and compressed."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.image_archive import normalize_image_id
from ansible_collections.u7s.cluster.plugins.modules import image_archive_info

HEX = "3f" * 32


def write_archive(path: Path, manifest: object, compress: bool = False) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("layer.tar", b"x" * 1024), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = gzip.compress(buffer.getvalue()) if compress else buffer.getvalue()
    path.write_bytes(data)
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
