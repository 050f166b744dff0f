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
        },
        "cgroup": {
            "version": "v2",                   # "v2", "hybrid" or "v1"
            "controllers": ["cpuset", "cpu", "io", "memory", "pids"],  # root cgroup.controllers
            "v1_controllers": [],              # controllers mounted as cgroup v1 hierarchies
            "mountpoint": "/sys/fs/cgroup",    # of the cgroup2 hierarchy, None without one
        },
        "user": {"name": "u7s", "exists": True, "uid": 1001, "gid": 1001,
                 "home": "/home/u7s", "shell": "/bin/bash"},   # uid..shell None when missing
        "subuid": [{"owner": "u7s", "start": 100000, "count": 65536, "line": 1}],
        "subgid": [{"owner": "u7s", "start": 100000, "count": 65536, "line": 1}],
    }

Options (all optional)::

    {
        "allow_cgroup_v1": False,      # accept cgroup v1 / hybrid hosts
        "create_user": False,          # the role creates the user, so a missing one is fine
        "subid_count": 65536,          # subordinate IDs the user needs in each file
        "manage_subid": True,          # the role allocates a missing range (u7s.cluster.subid)
        "required_controllers": ["cpu", "cpuset", "io", "memory", "pids"],
        "allow_unsupported_os": False, # downgrade "unsupported OS" to nothing
    }
"""

from __future__ import annotations

import typing as t

from ansible_collections.u7s.cluster.plugins.module_utils.subid import (
    DEFAULT_COUNT,
    SubidEntry,
    user_entries,
    user_range_problems,
)

REQUIRED_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")

SYSCTL_MAX_USER_NAMESPACES = "user.max_user_namespaces"
SYSCTL_UNPRIVILEGED_USERNS_CLONE = "kernel.unprivileged_userns_clone"
SYSCTL_APPARMOR_RESTRICT_USERNS = "kernel.apparmor_restrict_unprivileged_userns"
SYSCTLS = (
    SYSCTL_MAX_USER_NAMESPACES,
    SYSCTL_UNPRIVILEGED_USERNS_CLONE,
    SYSCTL_APPARMOR_RESTRICT_USERNS,
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
        "Fix: reinstall the host with a supported release, or set allow_unsupported_os "
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
                "that overlaps no other entry (usermod --add-%ss), or let the role "
                "allocate one (manage_subid)." % (path, name, name, count, kind)
            )
    return problems


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
    )


def needs_apparmor_userns_profile(facts: t.Mapping[str, t.Any]) -> bool:
    """Whether AppArmor restricts unprivileged user namespaces on the host.

    True only where kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu
    23.10 and later); there the rootless engine (rootlesskit) needs an AppArmor
    profile that allows "userns," before it can create a user namespace.
    """
    sysctl = facts.get("sysctl") or {}
    return _as_int(sysctl.get(SYSCTL_APPARMOR_RESTRICT_USERNS)) == 1
