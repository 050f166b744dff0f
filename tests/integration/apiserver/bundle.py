"""Find, verify and unpack binaries from the offline Kubernetes bundle.

The bundle is owned by artifacts/bundle.sh; its directory depends on the pins in
artifacts/versions.env, so it is always located through ``bundle.sh path`` and
never by a hard-coded version. Layout (artifacts/README.md): ``binaries.tar.zst``
(the archive named in manifest.json), ``manifest.json`` (pins, files[] with each
binary's path and sha256) and ``SHA256SUMS`` over both.

No pytest here: callers map :class:`BundleMissing` to a skip and
:class:`BundleError` to a failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[3]
BUNDLE_SH = REPO / "artifacts" / "bundle.sh"
BUILD_HINT = "artifacts/bundle.sh build"


class BundleError(RuntimeError):
    """The bundle exists but cannot be used (tool failure, bad checksum, missing file)."""


class BundleMissing(BundleError):
    """No bundle has been built for the current pins."""


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A bundle directory whose SHA256SUMS verified, with its parsed manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def pins(self) -> dict[str, str]:
        return self.manifest["pins"]

    @property
    def archive(self) -> Path:
        return self.path / self.manifest["archive"]["path"]

    def file_entry(self, name: str) -> dict[str, Any]:
        """The manifest's files[] entry for a binary such as ``etcd``."""
        for entry in self.manifest["files"]:
            if entry["name"] == name:
                return entry
        raise BundleError(f"{self.path}/manifest.json lists no file named {name!r}")

    def extract(self, names: list[str], dest: Path) -> dict[str, Path]:
        """Unpack the named binaries into ``dest`` and check them against the manifest."""
        return extract_binaries(self, names, dest)


def locate_bundle(bundle_sh: Path = BUNDLE_SH) -> Bundle:
    """Ask bundle.sh where the bundle for the current pins lives, then verify it."""
    if not bundle_sh.is_file():
        raise BundleMissing(f"{bundle_sh} not found; this checkout has no artifact bundle tooling")
    # `path` only computes the name (needs bash, jq, sha256sum); it never builds.
    proc = subprocess.run(["bash", str(bundle_sh), "path"], capture_output=True, text=True, timeout=60, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BundleError(f"`{bundle_sh} path` failed (rc={proc.returncode}): {proc.stderr.strip()}")
    path = Path(lines[-1])
    if not (path / "SHA256SUMS").is_file() or not (path / "manifest.json").is_file():
        raise BundleMissing(
            f"no Kubernetes artifact bundle for the current pins at {path}; build it with `{BUILD_HINT}`"
        )
    return verify_bundle(path)


def verify_bundle(path: Path) -> Bundle:
    """``sha256sum -c SHA256SUMS`` in the bundle; it must cover the manifest and the archive."""
    proc = subprocess.run(
        ["sha256sum", "--strict", "--quiet", "-c", "SHA256SUMS"],
        cwd=path, capture_output=True, text=True, timeout=300, check=False,
    )
    if proc.returncode != 0:
        raise BundleError(
            f"{path}: SHA256SUMS does not verify ({(proc.stdout + proc.stderr).strip()}); "
            f"remove the directory and run `{BUILD_HINT}`"
        )
    manifest = json.loads((path / "manifest.json").read_text())
    # A sums file that silently dropped a line would still pass `-c`.
    covered = {line.split(maxsplit=1)[1].lstrip("*").strip() for line in (path / "SHA256SUMS").read_text().splitlines() if line.strip()}
    archive = manifest.get("archive", {}).get("path")
    if not archive or not {"manifest.json", archive} <= covered:
        raise BundleError(f"{path}: SHA256SUMS covers {sorted(covered)}, not manifest.json and the archive {archive!r}")
    return Bundle(path=path, manifest=manifest)


def _zstd_reader(archive: Path) -> tuple[IO[bytes], subprocess.Popen[bytes] | None]:
    """A decompressed stream of ``archive``: the zstd CLI, else the python zstandard module."""
    zstd = shutil.which("zstd")
    if zstd:
        # --long=31 only raises the decoder's window limit (the archive uses
        # --long=27, the default limit), so a later re-tune of the build still unpacks.
        proc = subprocess.Popen([zstd, "-q", "-d", "-c", "--long=31", str(archive)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return proc.stdout, proc
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise BundleError("unpacking the bundle needs the zstd CLI (Debian: apt-get install zstd) "
                          "or the python 'zstandard' module") from None
    return zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(archive.open("rb")), None


def extract_binaries(bundle: Bundle, names: list[str], dest: Path) -> dict[str, Path]:
    """Stream the archive once, write only the wanted members, verify each sha256.

    Stops reading as soon as every wanted member is out: the archive is sorted,
    so etcd and kube-apiserver come before most of the bytes.
    """
    wanted = {posixpath.normpath(bundle.file_entry(n)["path"]): n for n in names}
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    stream, proc = _zstd_reader(bundle.archive)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = wanted.pop(posixpath.normpath(member.name), None)
                if name is None or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None
                # Written under the manifest name, never the member path: no traversal.
                target = dest / name
                digest = hashlib.sha256()
                with target.open("wb") as f:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        f.write(chunk)
                target.chmod(0o755)
                expected = bundle.file_entry(name)["sha256"]
                if digest.hexdigest() != expected:
                    raise BundleError(f"{bundle.archive}: {member.name} has sha256 {digest.hexdigest()}, manifest says {expected}")
                out[name] = target
                if not wanted:
                    break
    except tarfile.TarError as exc:
        raise BundleError(f"cannot read {bundle.archive}: {exc}") from exc
    finally:
        stream.close()
        # Closing the pipe early ends zstd with EPIPE: only a full read must exit 0.
        rc = proc.wait() if proc is not None else 0
    if wanted and rc != 0:
        raise BundleError(f"zstd failed (rc={rc}) on {bundle.archive}")
    if wanted:
        raise BundleError(f"{bundle.archive} lacks {sorted(wanted)}")
    return out
