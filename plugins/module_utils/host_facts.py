# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Read the host facts that :mod:`preflight` decides on.

Read-only. Every reader takes ``root`` (the directory standing in for ``/``)
so unit tests can point it at a fake tree; the module passes ``/``.
"""

from __future__ import annotations

import os
import pwd
import re
import typing as t

from ansible_collections.u7s.cluster.plugins.module_utils.preflight import SYSCTLS
from ansible_collections.u7s.cluster.plugins.module_utils.subid import parse_subid

CGROUP_ROOT = "/sys/fs/cgroup"
# Controllers a cgroup v1 hierarchy can bind (the mount options name them);
# named hierarchies such as name=systemd bind none.
CGROUP_V1_CONTROLLERS = frozenset(
    ("blkio", "cpu", "cpuacct", "cpuset", "debug", "devices", "freezer", "hugetlb",
     "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma")
)


class Mount(t.NamedTuple):
    """One line of /proc/self/mountinfo (or /proc/mounts)."""

    mountpoint: str
    fstype: str
    options: frozenset


def host_path(root: str, path: str) -> str:
    """path ("/proc/...") inside root."""
    return os.path.join(root, path.lstrip("/"))


def read_text(root: str, path: str) -> str | None:
    """Content of a file below root, None if it does not exist or cannot be read."""
    try:
        with open(host_path(root, path), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_sysctl(root: str, name: str) -> int | None:
    """Integer value of a sysctl (dotted name), None where /proc/sys lacks it."""
    text = read_text(root, "/proc/sys/" + name.replace(".", "/"))
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (IndexError, ValueError):
        return None


def read_sysctls(root: str = "/", names: t.Iterable[str] = SYSCTLS) -> dict[str, int | None]:
    """The sysctls preflight looks at."""
    return {name: read_sysctl(root, name) for name in names}


def _unescape_mount_field(field: str) -> str:
    r"""Undo the octal escapes (\040 for space, ...) of mount tables."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse /proc/self/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if separator < 6 or len(fields) < separator + 3:
            continue
        options = set(fields[5].split(","))
        options.update(fields[separator + 3].split(",") if len(fields) > separator + 3 else ())
        mounts.append(Mount(_unescape_mount_field(fields[4]), fields[separator + 1], frozenset(options)))
    return mounts


def parse_proc_mounts(text: str) -> list[Mount]:
    """Parse /proc/mounts: SOURCE MOUNTPOINT FSTYPE OPTIONS DUMP PASS."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            mounts.append(Mount(_unescape_mount_field(fields[1]), fields[2], frozenset(fields[3].split(","))))
    return mounts


def v1_controllers_of(mount: Mount) -> set[str]:
    """Controllers a cgroup v1 mount binds ("name=systemd" and the like bind none)."""
    return set(mount.options & CGROUP_V1_CONTROLLERS)


def read_mounts(root: str = "/") -> list[Mount]:
    """The mount table, from mountinfo or else /proc/mounts."""
    mountinfo = read_text(root, "/proc/self/mountinfo")
    if mountinfo is not None:
        return parse_mountinfo(mountinfo)
    return parse_proc_mounts(read_text(root, "/proc/mounts") or "")


def read_controllers(root: str, cgroup_dir: str) -> list[str] | None:
    """Controllers listed in cgroup_dir/cgroup.controllers, None without that file."""
    text = read_text(root, cgroup_dir.rstrip("/") + "/cgroup.controllers")
    return None if text is None else text.split()


def detect_cgroup(root: str = "/", mounts: t.Sequence[Mount] | None = None) -> dict[str, t.Any]:
    """The cgroup layout: version, v2 controllers, v1 controllers, v2 mountpoint.

    v2: /sys/fs/cgroup/cgroup.controllers exists and no controller is mounted
    as a v1 hierarchy; hybrid: a cgroup2 hierarchy and v1 controllers side by
    side (systemd's /sys/fs/cgroup/unified layout); v1 otherwise.
    """
    if mounts is None:
        mounts = read_mounts(root)
    v1_controllers: set[str] = set()
    v2_mountpoints = []
    for mount in mounts:
        if mount.fstype == "cgroup2":
            v2_mountpoints.append(mount.mountpoint)
        elif mount.fstype == "cgroup":
            v1_controllers |= v1_controllers_of(mount)
    root_controllers = read_controllers(root, CGROUP_ROOT)
    if root_controllers is not None and not v1_controllers:
        version, mountpoint, controllers = "v2", CGROUP_ROOT, root_controllers
    elif v2_mountpoints or root_controllers is not None:
        version = "hybrid"
        mountpoint = CGROUP_ROOT if root_controllers is not None else v2_mountpoints[0]
        controllers = read_controllers(root, mountpoint) or []
    else:
        version, mountpoint, controllers = "v1", None, []
    return {
        "version": version,
        "controllers": sorted(controllers),
        "v1_controllers": sorted(v1_controllers),
        "mountpoint": mountpoint,
    }


def lookup_user(name: str) -> dict[str, t.Any]:
    """The user's passwd entry; exists False (and None values) when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return {"name": name, "exists": False, "uid": None, "gid": None, "home": None, "shell": None}
    return {
        "name": name,
        "exists": True,
        "uid": entry.pw_uid,
        "gid": entry.pw_gid,
        "home": entry.pw_dir,
        "shell": entry.pw_shell,
    }


def read_subid_entries(root: str, path: str) -> list[dict[str, t.Any]]:
    """Entries of a subuid/subgid file as dicts; a missing file has none."""
    return [entry.to_dict() for entry in parse_subid(read_text(root, path) or "").entries]


def kernel_release(root: str = "/") -> str | None:
    """Release of the running kernel (uname -r)."""
    text = read_text(root, "/proc/sys/kernel/osrelease")
    if text is not None:
        return text.strip()
    return os.uname().release if root == "/" else None


def gather_preflight_facts(user: str, root: str = "/") -> dict[str, t.Any]:
    """The host facts preflight decides on (see the preflight module docstring)."""
    return {
        "kernel_release": kernel_release(root),
        "sysctl": read_sysctls(root),
        "cgroup": detect_cgroup(root),
        "user": lookup_user(user),
        "subuid": read_subid_entries(root, "/etc/subuid"),
        "subgid": read_subid_entries(root, "/etc/subgid"),
    }
