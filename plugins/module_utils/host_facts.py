# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Read the host facts that :mod:`preflight` decides on.

Read-only. Every reader takes ``root`` (the directory standing in for ``/``)
so unit tests can point it at a fake tree; the module passes ``/``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import typing as t

from ansible_collections.u7s.cluster.plugins.module_utils.preflight import SYSCTLS
from ansible_collections.u7s.cluster.plugins.module_utils.subid import parse_login_defs, parse_subid

CGROUP_ROOT = "/sys/fs/cgroup"
# The unit host_prereqs_cgroup_v1_chown installs (roles/host_prereqs/templates/u7s-cgroup-v1-chown.service.j2).
CGROUP_V1_CHOWN_UNIT = "/etc/systemd/system/u7s-cgroup-v1-chown.service"
APPARMOR_DIR = "/etc/apparmor.d"
# The profile file host_prereqs installs; its profiles are the collection's own, not the distribution's.
APPARMOR_OWN_FILE = "u7s-userns"
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


def _owner_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def v1_hierarchies(root: str = "/", mounts: t.Sequence[Mount] | None = None) -> list[dict[str, t.Any]]:
    """The cgroup v1 hierarchies that bind controllers, with the owner of each (read with stat).

    A hierarchy owned by an account other than root was handed to it
    (host_prereqs_cgroup_v1_chown does that with chown -R at boot).
    """
    if mounts is None:
        mounts = read_mounts(root)
    hierarchies = []
    for mount in mounts:
        controllers = v1_controllers_of(mount)
        if mount.fstype != "cgroup" or not controllers:
            continue
        try:
            uid: int | None = os.stat(host_path(root, mount.mountpoint)).st_uid
        except OSError:
            uid = None
        hierarchies.append({
            "mountpoint": mount.mountpoint,
            "controllers": sorted(controllers),
            "uid": uid,
            "owner": _owner_name(uid),
        })
    return sorted(hierarchies, key=lambda item: item["mountpoint"])


def read_cgroup_v1_chown_unit(root: str = "/") -> dict[str, t.Any] | None:
    """Who the u7s-cgroup-v1-chown.service unit hands the cgroup v1 hierarchies to; None without the unit."""
    text = read_text(root, CGROUP_V1_CHOWN_UNIT)
    if text is None:
        return None
    uid_match = re.search(r"^ExecStart=\S*chown\s+-R\s+(\d+):", text, re.MULTILINE)
    user_match = re.search(r"^Description=Hand cgroup v1 controllers to (\S+)\s*$", text, re.MULTILINE)
    return {
        "path": CGROUP_V1_CHOWN_UNIT,
        "uid": int(uid_match.group(1)) if uid_match else None,
        "user": user_match.group(1) if user_match else None,
    }


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


def _parse_id_file(text: str) -> list[dict[str, t.Any]]:
    """name:x:id:... lines (/etc/passwd, /etc/group) as {"name", "id"}."""
    accounts = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] and fields[2].isascii() and fields[2].isdigit():
            accounts.append({"name": fields[0], "id": int(fields[2])})
    return accounts


def read_accounts(root: str = "/") -> dict[str, list[dict[str, t.Any]]]:
    """The host's users (uid) and groups (gid), as {"name", "id"} sorted by ID.

    On the host itself (root "/") through NSS (getpwall, getgrall), so LDAP or
    SSSD accounts count too where the directory allows enumeration (SSSD's
    enumerate is off by default: then only local and cached accounts are
    seen). Below another root, from its /etc/passwd and /etc/group.
    """
    if root == "/":
        users = [{"name": entry.pw_name, "id": entry.pw_uid} for entry in pwd.getpwall()]
        groups = [{"name": entry.gr_name, "id": entry.gr_gid} for entry in grp.getgrall()]
    else:
        users = _parse_id_file(read_text(root, "/etc/passwd") or "")
        groups = _parse_id_file(read_text(root, "/etc/group") or "")

    def unique(accounts: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
        return sorted({(item["id"], item["name"]): item for item in accounts}.values(),
                      key=lambda item: (item["id"], item["name"]))

    return {"users": unique(users), "groups": unique(groups)}


def read_login_defs(root: str = "/") -> dict[str, int]:
    """The ID ranges of /etc/login.defs (UID_MIN, SUB_UID_MIN, ...), shadow-utils' defaults where unset."""
    return parse_login_defs(read_text(root, "/etc/login.defs") or "")


def _expand_braces(pattern: str) -> list[str]:
    """AppArmor's {a,b} alternation expanded ("/{,usr/}bin/x" -> "/bin/x", "/usr/bin/x"); nesting too."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    expanded = []
    for choice in match.group(1).split(","):
        expanded.extend(_expand_braces(pattern[:match.start()] + choice + pattern[match.end():]))
    return expanded


# flags=(...) of a profile header.
_PROFILE_FLAGS = re.compile(r"\bflags\s*=\s*\([^)]*\)")


def parse_profile_header(line: str) -> tuple[str, str | None] | None:
    """(profile name, attachment) of "profile NAME [ATTACHMENT] [flags=(...)] {" or "ATTACHMENT [flags=(...)] {".

    None for any other line. A profile named by a path attaches to that path.
    """
    text = line.split("#", 1)[0].strip()
    if not text.endswith("{"):
        return None
    fields = _PROFILE_FLAGS.sub(" ", text[:-1]).split()
    if len(fields) >= 2 and fields[0] == "profile":
        name = fields[1]
        attachment = fields[2] if len(fields) > 2 else None
    elif len(fields) == 1 and fields[0].startswith("/"):
        name = attachment = fields[0]
    else:
        return None
    if attachment is None and name.startswith("/"):
        attachment = name
    return name, attachment if attachment and attachment.startswith("/") else None


def apparmor_profiles_for(root: str, binaries: t.Iterable[str]) -> list[dict[str, t.Any]]:
    """Profiles of /etc/apparmor.d (the collection's own file and disabled ones left out) that attach to BINARIES.

    One {"binary", "profile", "file"} per binary and profile; the attachment is
    compared as a path after brace alternation is expanded (globs and @{variables}
    are not resolved).
    """
    wanted = {os.path.normpath(binary) for binary in binaries if binary}
    if not wanted:
        return []
    directory = host_path(root, APPARMOR_DIR)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    try:
        disabled = set(os.listdir(os.path.join(directory, "disable")))
    except OSError:
        disabled = set()
    found = []
    for name in names:
        path = os.path.join(directory, name)
        if name == APPARMOR_OWN_FILE or name in disabled or name.startswith(".") or not os.path.isfile(path):
            continue
        text = read_text(root, APPARMOR_DIR + "/" + name) or ""
        for line in text.splitlines():
            header = parse_profile_header(line)
            if header is None or header[1] is None:
                continue
            profile, attachment = header
            for candidate in _expand_braces(attachment):
                if os.path.normpath(candidate) in wanted:
                    found.append({"binary": os.path.normpath(candidate), "profile": profile,
                                  "file": APPARMOR_DIR + "/" + name})
    return found


def read_subid_entries(root: str, path: str) -> list[dict[str, t.Any]]:
    """Entries of a subuid/subgid file as dicts; a missing file has none."""
    return [entry.to_dict() for entry in parse_subid(read_text(root, path) or "").entries]


def kernel_release(root: str = "/") -> str | None:
    """Release of the running kernel (uname -r)."""
    text = read_text(root, "/proc/sys/kernel/osrelease")
    if text is not None:
        return text.strip()
    return os.uname().release if root == "/" else None


def gather_preflight_facts(
    user: str, root: str = "/", apparmor_binaries: t.Iterable[str] = ()
) -> dict[str, t.Any]:
    """The host facts preflight decides on (see the preflight module docstring)."""
    mounts = read_mounts(root)
    cgroup = detect_cgroup(root, mounts)
    cgroup["v1_hierarchies"] = v1_hierarchies(root, mounts)
    cgroup["v1_chown_unit"] = read_cgroup_v1_chown_unit(root)
    return {
        "kernel_release": kernel_release(root),
        "sysctl": read_sysctls(root),
        "cgroup": cgroup,
        "user": lookup_user(user),
        "subuid": read_subid_entries(root, "/etc/subuid"),
        "subgid": read_subid_entries(root, "/etc/subgid"),
        "accounts": read_accounts(root),
        "login_defs": read_login_defs(root),
        "apparmor_profiles": apparmor_profiles_for(root, apparmor_binaries),
    }
