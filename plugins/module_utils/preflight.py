# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Decide whether a host can run rootless Kubernetes (Usernetes Gen2).

Pure decision logic on recorded facts, no I/O: the ``u7s.cluster.preflight_facts``
module gathers the host part, the role merges in Ansible's distribution facts
and the ``u7s.cluster.preflight_problems`` filter calls :func:`preflight_problems`.

Facts schema (a plain dict; keys that are missing count as unknown and are
not held against the host)::

    {
        # From Ansible's setup facts (ansible_facts), merged in by the role:
        "distribution": "Debian",              # ansible_facts.distribution
        "distribution_major_version": "13",    # ansible_facts.distribution_major_version
        "distribution_version": "13.1",        # ansible_facts.distribution_version
        "os_family": "Debian",                 # ansible_facts.os_family

        # From u7s.cluster.preflight_facts:
        "kernel_release": "6.12.48+deb13-amd64",
        "sysctl": {                            # int, or None where /proc/sys lacks it
            "user.max_user_namespaces": 63368,
            "kernel.unprivileged_userns_clone": 1,              # Debian/Ubuntu kernels only
            "kernel.apparmor_restrict_unprivileged_userns": None, # Ubuntu 23.10+ only
            "net.ipv4.ip_unprivileged_port_start": 1024,  # lowest port an unprivileged process may bind
        },
        "cgroup": {
            "version": "v2",                   # "v2", "hybrid" or "v1"
            "controllers": ["cpuset", "cpu", "io", "memory", "pids"],  # root cgroup.controllers
            "v1_controllers": [],              # controllers mounted as cgroup v1 hierarchies
            "mountpoint": "/sys/fs/cgroup",    # of the cgroup2 hierarchy, None without one
            # cgroup v1 hierarchies that bind controllers, with their owner (stat):
            "v1_hierarchies": [{"mountpoint": "/sys/fs/cgroup/memory", "controllers": ["memory"],
                                "uid": 0, "owner": "root"}],
            # /etc/systemd/system/u7s-cgroup-v1-chown.service (host_prereqs_cgroup_v1_chown), None without it:
            "v1_chown_unit": {"path": "...", "uid": 1001, "user": "u7s"},
        },
        "user": {"name": "u7s", "exists": True, "uid": 1001, "gid": 1001,
                 "home": "/home/u7s", "shell": "/bin/bash"},   # uid..shell None when missing
        "subuid": [{"owner": "u7s", "start": 100000, "count": 65536, "line": 1}],
        "subgid": [{"owner": "u7s", "start": 100000, "count": 65536, "line": 1}],
        # The host's users and groups (NSS enumeration), and /etc/login.defs' ID ranges:
        "accounts": {"users": [{"name": "root", "id": 0}, ...], "groups": [{"name": "root", "id": 0}, ...]},
        "login_defs": {"UID_MIN": 1000, "SYS_UID_MAX": 999, "SUB_UID_MIN": 100000, ...},
        # Profiles of /etc/apparmor.d other than the collection's that attach to the binaries asked about:
        "apparmor_profiles": [{"binary": "/usr/bin/rootlesskit", "profile": "rootlesskit",
                               "file": "/etc/apparmor.d/rootlesskit"}],
    }

Options (all optional)::

    {
        "allow_cgroup_v1": False,      # accept cgroup v1 / hybrid hosts
        "create_user": False,          # the role creates the user, so a missing one is fine
        "subid_count": 65536,          # subordinate IDs the user needs in each file
        "manage_subid": True,          # the role allocates a missing range (u7s.cluster.subid)
        "required_controllers": ["cpu", "cpuset", "io", "memory", "pids"],
        "allow_unsupported_os": False, # downgrade "unsupported OS" to nothing
        "host": None,                  # the inventory host, named in messages
        "published_ports": [],         # [{"port": 6443, "protocol": "tcp"}]: what the host's node publishes
        "port_names": {},              # {"6443/tcp": "u7s_port_apiserver"}: the setting of each port
    }
"""

from __future__ import annotations

import hashlib
import os
import typing as t

from ansible_collections.u7s.cluster.plugins.module_utils.subid import (
    DEFAULT_COUNT,
    SubidConflictError,
    SubidEntry,
    account_range_problems,
    find_free_start,
    reserved_ranges,
    subordinate_min,
    user_entries,
    user_range_problems,
)

REQUIRED_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")

SYSCTL_MAX_USER_NAMESPACES = "user.max_user_namespaces"
SYSCTL_UNPRIVILEGED_USERNS_CLONE = "kernel.unprivileged_userns_clone"
SYSCTL_APPARMOR_RESTRICT_USERNS = "kernel.apparmor_restrict_unprivileged_userns"
SYSCTL_UNPRIVILEGED_PORT_START = "net.ipv4.ip_unprivileged_port_start"
SYSCTLS = (
    SYSCTL_MAX_USER_NAMESPACES,
    SYSCTL_UNPRIVILEGED_USERNS_CLONE,
    SYSCTL_APPARMOR_RESTRICT_USERNS,
    SYSCTL_UNPRIVILEGED_PORT_START,
)

# ansible_facts.distribution values of the supported RHEL family members
# (CentOS Stream reports "CentOS").
RHEL_FAMILY = ("RedHat", "Rocky", "AlmaLinux", "CentOS")
DEBIAN_MAJORS = (12, 13)
RHEL_MAJORS = (9,)
UBUNTU_OLDEST_LTS = (22, 4)
SUPPORTED_OS_TEXT = (
    "Debian 12/13, Ubuntu 22.04 or an LTS from 24.04 on, "
    "RHEL/Rocky/AlmaLinux/CentOS Stream 9"
)

DEFAULT_OPTIONS: dict[str, t.Any] = {
    "allow_cgroup_v1": False,
    "create_user": False,
    "subid_count": DEFAULT_COUNT,
    "manage_subid": True,
    "required_controllers": list(REQUIRED_CONTROLLERS),
    "allow_unsupported_os": False,
    "host": None,
    "published_ports": [],
    "port_names": {},
}


def _as_int(value: t.Any) -> int | None:
    """int(value), or None for None and values that are not numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _version_tuple(version: t.Any) -> tuple[int, ...] | None:
    """'24.04' -> (24, 4); None when it is not dotted numbers."""
    parts = str(version or "").strip().split(".")
    if not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def is_supported_os(facts: t.Mapping[str, t.Any]) -> bool:
    """Whether the distribution facts name a supported operating system."""
    distribution = str(facts.get("distribution") or "")
    major = _as_int(facts.get("distribution_major_version"))
    if distribution == "Debian":
        return major in DEBIAN_MAJORS
    if distribution == "Ubuntu":
        version = _version_tuple(facts.get("distribution_version"))
        if version is None or len(version) < 2:
            return False
        if version[:2] == UBUNTU_OLDEST_LTS:
            return True
        # Later LTS releases: YY.04 with an even YY from 24 on.
        return version[0] >= 24 and version[0] % 2 == 0 and version[1] == 4
    if distribution in RHEL_FAMILY:
        return major in RHEL_MAJORS
    return False


def _os_problems(facts: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any]) -> list[str]:
    if options["allow_unsupported_os"] or "distribution" not in facts:
        return []
    if is_supported_os(facts):
        return []
    name = " ".join(
        str(part) for part in (facts.get("distribution"), facts.get("distribution_version")) if part
    ) or "an unknown distribution"
    return [
        "Unsupported operating system %s (os_family %s); supported: %s. "
        "Fix: reinstall the host with a supported release, or set host_prereqs_allow_unsupported_os: true "
        "to try anyway." % (name, facts.get("os_family") or "unknown", SUPPORTED_OS_TEXT)
    ]


def _userns_problems(facts: t.Mapping[str, t.Any]) -> list[str]:
    sysctl = facts.get("sysctl") or {}
    problems = []
    if _as_int(sysctl.get(SYSCTL_MAX_USER_NAMESPACES)) == 0:
        problems.append(
            "User namespaces are disabled (%s = 0), rootless containers cannot start. "
            "Fix: sysctl -w %s=28633 and persist it in /etc/sysctl.d/."
            % (SYSCTL_MAX_USER_NAMESPACES, SYSCTL_MAX_USER_NAMESPACES)
        )
    if _as_int(sysctl.get(SYSCTL_UNPRIVILEGED_USERNS_CLONE)) == 0:
        problems.append(
            "Unprivileged user namespaces are disabled (%s = 0). "
            "Fix: sysctl -w %s=1 and persist it in /etc/sysctl.d/."
            % (SYSCTL_UNPRIVILEGED_USERNS_CLONE, SYSCTL_UNPRIVILEGED_USERNS_CLONE)
        )
    return problems


def _cgroup_problems(facts: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any]) -> list[str]:
    cgroup = facts.get("cgroup") or {}
    version = cgroup.get("version")
    if version in ("v1", "hybrid"):
        if options["allow_cgroup_v1"]:
            return []
        layout = "cgroup v1" if version == "v1" else "a hybrid cgroup v1/v2 layout"
        return [
            "The host uses %s; rootless Kubernetes needs the unified cgroup v2 hierarchy "
            "for resource limits. Fix: boot with systemd.unified_cgroup_hierarchy=1 on the "
            "kernel command line (and no cgroup_no_v1 exceptions), or set u7s_allow_cgroup_v1 "
            "to accept a cluster without limits (test beds only)." % layout
        ]
    if version != "v2" or cgroup.get("controllers") is None:
        return []
    available = set(cgroup.get("controllers") or ())
    missing = [name for name in options["required_controllers"] if name not in available]
    if not missing:
        return []
    return [
        "cgroup v2 controllers %s are missing from %s/cgroup.controllers. "
        "Fix: use a kernel with these controllers and make sure none of them is "
        "mounted as a cgroup v1 hierarchy (cgroup_no_v1=all on the kernel command line)."
        % (", ".join(missing), cgroup.get("mountpoint") or "/sys/fs/cgroup")
    ]


def _user_problems(facts: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any]) -> list[str]:
    user = facts.get("user")
    if not user:
        return []
    name = user.get("name")
    if not user.get("exists"):
        if options["create_user"]:
            return []
        return [
            "Cluster user %r does not exist. Fix: create it (useradd --create-home %s) "
            "or set host_prereqs_user_create: true so the role creates it." % (name, name)
        ]
    if _as_int(user.get("uid")) == 0:
        return [
            "Cluster user %r is root; Usernetes must run as an unprivileged user. "
            "Fix: choose a regular user." % name
        ]
    return []


def _subid_problems(facts: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any]) -> list[str]:
    count = _as_int(options["subid_count"])
    if count is None or count < DEFAULT_COUNT:
        # The node's images own files up to uid 65535 (nobody/nogroup); a rootless
        # engine maps them through the user's subordinate range.
        return [
            "host_prereqs_subid_count is %r; a rootless engine needs at least %d subordinate IDs (the node's "
            "images use IDs up to %d). Fix: set host_prereqs_subid_count to %d or more."
            % (options["subid_count"], DEFAULT_COUNT, DEFAULT_COUNT - 1, DEFAULT_COUNT)
        ]
    user = facts.get("user") or {}
    name = user.get("name")
    if not name:
        return []
    uid = _as_int(user.get("uid"))
    problems = []
    for kind in ("subuid", "subgid"):
        if facts.get(kind) is None:
            continue
        entries = [SubidEntry.from_dict(entry) for entry in facts[kind]]
        path = "/etc/%s" % kind
        problems.extend(user_range_problems(entries, name, uid, count, path))
        if not options["manage_subid"] and not user_entries(entries, name, uid):
            problems.append(
                "%s: user %r has no subordinate ID range. Fix: add a line %s:<start>:%d "
                "that overlaps no other entry, no account's ID and no system ID (usermod --add-%ss), "
                "or let the role host_prereqs allocate one (it does on every run)." % (path, name, name, count, kind)
            )
        problems.extend(_account_problems(facts, options, kind, entries, name, uid, count))
    return problems


def _account_problems(
    facts: t.Mapping[str, t.Any],
    options: t.Mapping[str, t.Any],
    kind: str,
    entries: list[SubidEntry],
    name: str,
    uid: int | None,
    count: int,
) -> list[str]:
    """The user's range (recorded, or the one the role would allocate) against the host's own IDs."""
    accounts_facts = facts.get("accounts")
    if not isinstance(accounts_facts, t.Mapping):
        return []
    accounts = list(accounts_facts.get("users" if kind == "subuid" else "groups") or [])
    login_defs = facts.get("login_defs")
    path = "/etc/%s" % kind
    if user_entries(entries, name, uid):
        return account_range_problems(entries, name, uid, count, path, kind, login_defs, accounts,
                                      options.get("host"))
    if not options["manage_subid"]:
        return []
    try:
        find_free_start(entries, count, subordinate_min(kind, login_defs), reserved_ranges(kind, login_defs, accounts))
    except SubidConflictError as exc:
        return [
            "%s%s: the role host_prereqs would give user %r a range of %d subordinate IDs, but there is none "
            "left clear of the other entries, the system range and every account: %s Fix: remove the entries "
            "of users that no longer exist from %s, or lower host_prereqs_subid_count (not below %d)."
            % ("Host %s: " % options["host"] if options.get("host") else "", path, name, count, exc, path,
               DEFAULT_COUNT)
        ]
    return []


def _tenant_problems(facts: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any]) -> list[str]:
    """cgroup v1 has no delegation: hierarchies handed to another user cannot serve this user's cluster too."""
    cgroup = facts.get("cgroup") or {}
    if cgroup.get("version") not in ("v1", "hybrid") or not options["allow_cgroup_v1"]:
        return []
    user = facts.get("user") or {}
    name = user.get("name") or options.get("user")
    uid = _as_int(user.get("uid")) if user.get("exists") else None
    foreign: dict[tuple[int | None, str | None], list[str]] = {}
    for hierarchy in cgroup.get("v1_hierarchies") or ():
        owner_uid = _as_int(hierarchy.get("uid"))
        if owner_uid is None or owner_uid in (0, uid):
            continue
        foreign.setdefault((owner_uid, hierarchy.get("owner")), []).append(str(hierarchy.get("mountpoint")))
    unit = cgroup.get("v1_chown_unit")
    unit_other = None
    if isinstance(unit, t.Mapping):
        unit_uid = _as_int(unit.get("uid"))
        unit_user = unit.get("user")
        ours = (uid is not None and unit_uid == uid) or (uid is None and unit_user == name)
        if not ours and (unit_uid is not None or unit_user):
            unit_other = (unit_uid, unit_user)
    if not foreign and unit_other is None:
        return []
    owners = []
    for (owner_uid, owner), mountpoints in sorted(foreign.items(), key=lambda item: item[0][0] or 0):
        owners.append("%s (uid %d) owns %s" % (owner or "an account", owner_uid, ", ".join(sorted(mountpoints))))
    reasons = []
    if owners:
        reasons.append("the cgroup v1 controller hierarchies are handed to another user: %s" % "; ".join(owners))
    if unit_other is not None:
        unit_uid, unit_user = unit_other
        reasons.append("%s hands them to %s at every boot" % (
            unit.get("path") or "u7s-cgroup-v1-chown.service",  # type: ignore[union-attr]
            " ".join(part for part in (unit_user, "(uid %d)" % unit_uid if unit_uid is not None else "") if part)))
    first_owner = (min(foreign, key=lambda key: key[0] or 0)[1] if foreign else None) or (unit_other[1] if unit_other else None)
    return [
        "%sThe host uses cgroup v1, where controllers cannot be delegated, and %s. Only that user's cluster can "
        "run here: u7s_user %s would fail at kubeadm init (its kubelet cannot create cgroups), and handing the "
        "hierarchies over (host_prereqs_cgroup_v1_chown) would break the other cluster. Fix: run this cluster "
        "on other hosts, or as %s (u7s_user) if it is that user's, or move the hosts to cgroup v2 "
        "(systemd.unified_cgroup_hierarchy=1 on the kernel command line), where several users' clusters run "
        "side by side."
        % ("Host %s: " % options["host"] if options.get("host") else "", "; ".join(reasons), name,
           first_owner or "that user")
    ]


def _port_problems(facts: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any]) -> list[str]:
    """Published ports below the host's net.ipv4.ip_unprivileged_port_start, which the rootless engine cannot bind."""
    start = _as_int((facts.get("sysctl") or {}).get(SYSCTL_UNPRIVILEGED_PORT_START))
    if start is None:
        return []
    port_names = options.get("port_names") or {}
    low = []
    for published in options.get("published_ports") or ():
        if not isinstance(published, t.Mapping):
            continue
        port = _as_int(published.get("port"))
        protocol = str(published.get("protocol") or "tcp")
        if port is not None and port < start:
            key = "%d/%s" % (port, protocol)
            low.append((port, key, str(port_names.get(key) or "u7s_extra_ports")))
    if not low:
        return []
    low.sort()
    settings = sorted({setting for _port, _key, setting in low})
    return [
        "%sport%s %s %s below %s (%d) on this host, so the rootless engine cannot publish %s. Fix: give the "
        "cluster ports from %d on (%s), or lower %s on this host to %d (sysctl -w, and persist it in "
        "/etc/sysctl.d/)."
        % ("Host %s: " % options["host"] if options.get("host") else "", "s" if len(low) > 1 else "",
           ", ".join("%s (%s)" % (key, setting) for _port, key, setting in low),
           "are" if len(low) > 1 else "is", SYSCTL_UNPRIVILEGED_PORT_START, start,
           "them" if len(low) > 1 else "it", start, ", ".join(settings), SYSCTL_UNPRIVILEGED_PORT_START, low[0][0])
    ]


def merge_options(options: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """Options with defaults filled in; None values mean "use the default"."""
    merged = dict(DEFAULT_OPTIONS)
    for key, value in (options or {}).items():
        if value is not None:
            merged[key] = value
    return merged


def preflight_problems(
    facts: t.Mapping[str, t.Any], options: t.Mapping[str, t.Any] | None = None
) -> list[str]:
    """Everything that stops the host from running Usernetes, as "... Fix: ..." messages.

    An empty list means the host passed. See the module docstring for the
    facts and options schemas.
    """
    merged = merge_options(options)
    return (
        _os_problems(facts, merged)
        + _userns_problems(facts)
        + _cgroup_problems(facts, merged)
        + _user_problems(facts, merged)
        + _subid_problems(facts, merged)
        + _tenant_problems(facts, merged)
        + _port_problems(facts, merged)
    )


def needs_apparmor_userns_profile(facts: t.Mapping[str, t.Any]) -> bool:
    """Whether AppArmor restricts unprivileged user namespaces on the host.

    True only where kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu
    23.10 and later); there the rootless engine (rootlesskit) needs an AppArmor
    profile that allows "userns," before it can create a user namespace.
    """
    sysctl = facts.get("sysctl") or {}
    return _as_int(sysctl.get(SYSCTL_APPARMOR_RESTRICT_USERNS)) == 1


def apparmor_userns_profiles(
    binaries: t.Iterable[t.Any], distribution_profiles: t.Iterable[t.Mapping[str, t.Any]] | None = None
) -> list[dict[str, str]]:
    """The profiles host_prereqs writes: one {"name", "binary"} per binary no other profile attaches to.

    Binaries that a profile of the distribution (or the site) already attaches
    to (``distribution_profiles``, the preflight facts' ``apparmor_profiles``)
    get none: two profiles attaching to one path would conflict. A binary's
    profile is named u7s-userns-<basename>; binaries that share a basename are
    told apart by a hash of their path (u7s-userns-<basename>-<8 hex digits>),
    so no two share a name. Duplicates are dropped, the order is kept.
    """
    covered = {os.path.normpath(str(profile.get("binary"))) for profile in distribution_profiles or ()
               if profile.get("binary")}
    paths: list[str] = []
    for binary in binaries:
        path = os.path.normpath(str(binary))
        if path not in paths:
            paths.append(path)
    basenames = [os.path.basename(path) for path in paths]
    profiles = []
    for path, basename in zip(paths, basenames):
        if path in covered:
            continue
        name = "u7s-userns-" + basename
        if basenames.count(basename) > 1:
            name += "-" + hashlib.sha256(path.encode("utf-8")).hexdigest()[:8]
        profiles.append({"name": name, "binary": path})
    return profiles
