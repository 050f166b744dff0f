# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Fact gathering against a fake root directory."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils import host_facts
from ansible_collections.u7s.cluster.plugins.module_utils.preflight import preflight_problems

# Recorded on a Debian 13 host (systemd, unified hierarchy).
MOUNTINFO_V2 = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

# Recorded on the Debian 12 CI machine (hybrid: v1 controllers plus cgroup2 at unified/).
MOUNTINFO_HYBRID = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

# CentOS 7 style: v1 only, controllers co-mounted.
MOUNTINFO_V1 = """\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,\
name=systemd
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
"""


def make_root(tmp_path: pathlib.Path, files: dict[str, str]) -> str:
    for relative, content in files.items():
        path = tmp_path / relative.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return str(tmp_path)


class TestSysctl:
    def test_values_and_absent_files(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {
            "/proc/sys/user/max_user_namespaces": "63368\n",
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start": "1024\n",
        })
        assert host_facts.read_sysctls(root) == {
            "user.max_user_namespaces": 63368,
            "kernel.unprivileged_userns_clone": None,
            "kernel.apparmor_restrict_unprivileged_userns": 1,
            "net.ipv4.ip_unprivileged_port_start": 1024,
        }

    def test_unreadable_value_is_none(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {"/proc/sys/user/max_user_namespaces": "\n"})
        assert host_facts.read_sysctl(root, "user.max_user_namespaces") is None


class TestMountinfo:
    def test_parse_fields(self) -> None:
        mounts = host_facts.parse_mountinfo(MOUNTINFO_V2)
        cgroup = [mount for mount in mounts if mount.fstype == "cgroup2"]
        assert cgroup == [host_facts.Mount(
            "/sys/fs/cgroup", "cgroup2",
            frozenset({"rw", "nosuid", "nodev", "noexec", "relatime", "nsdelegate", "memory_recursiveprot"}),
        )]

    def test_escaped_mountpoint(self) -> None:
        line = "50 28 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw\n"
        assert host_facts.parse_mountinfo(line)[0].mountpoint == "/mnt/with space"

    def test_v1_controllers_of_named_hierarchy_is_empty(self) -> None:
        mounts = host_facts.parse_mountinfo(MOUNTINFO_V1)
        assert [sorted(host_facts.v1_controllers_of(mount)) for mount in mounts if mount.fstype == "cgroup"] == [
            [], ["cpu", "cpuacct"], ["memory"],
        ]

    def test_proc_mounts_fallback(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {
            "/proc/mounts": "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n",
            "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
        })
        assert host_facts.detect_cgroup(root)["version"] == "v2"


class TestDetectCgroup:
    def test_v2(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {
            "/proc/self/mountinfo": MOUNTINFO_V2,
            "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        })
        assert host_facts.detect_cgroup(root) == {
            "version": "v2",
            "controllers": ["cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma"],
            "v1_controllers": [],
            "mountpoint": "/sys/fs/cgroup",
        }

    def test_hybrid_recorded_on_ci_machine(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {
            "/proc/self/mountinfo": MOUNTINFO_HYBRID,
            "/sys/fs/cgroup/unified/cgroup.controllers": "\n",
        })
        assert host_facts.detect_cgroup(root) == {
            "version": "hybrid",
            "controllers": [],
            "v1_controllers": ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"],
            "mountpoint": "/sys/fs/cgroup/unified",
        }

    def test_v2_root_with_a_v1_controller_mounted_is_hybrid(self, tmp_path: pathlib.Path) -> None:
        extra = "60 30 0:50 / /sys/fs/cgroup/net_cls rw,relatime - cgroup cgroup rw,net_cls\n"
        root = make_root(tmp_path, {
            "/proc/self/mountinfo": MOUNTINFO_V2 + extra,
            "/sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
        })
        facts = host_facts.detect_cgroup(root)
        assert facts["version"] == "hybrid"
        assert facts["v1_controllers"] == ["net_cls"]

    def test_v2_with_named_v1_hierarchy_stays_v2(self, tmp_path: pathlib.Path) -> None:
        named = "61 30 0:51 / /run/systemd-compat rw - cgroup cgroup rw,xattr,name=systemd\n"
        root = make_root(tmp_path, {
            "/proc/self/mountinfo": MOUNTINFO_V2 + named,
            "/sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
        })
        assert host_facts.detect_cgroup(root)["version"] == "v2"

    def test_v1(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {"/proc/self/mountinfo": MOUNTINFO_V1})
        assert host_facts.detect_cgroup(root) == {
            "version": "v1",
            "controllers": [],
            "v1_controllers": ["cpu", "cpuacct", "memory"],
            "mountpoint": None,
        }


class TestUser:
    def test_existing_user(self) -> None:
        user = host_facts.lookup_user("root")
        assert user["exists"] is True and user["uid"] == 0 and user["name"] == "root"

    def test_missing_user(self) -> None:
        assert host_facts.lookup_user("u7s-no-such-user") == {
            "name": "u7s-no-such-user", "exists": False, "uid": None, "gid": None, "home": None, "shell": None,
        }


def test_gather_feeds_preflight(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_facts, "lookup_user", lambda name: {
        "name": name, "exists": True, "uid": 1001, "gid": 1001, "home": "/home/" + name, "shell": "/bin/sh",
    })
    root = make_root(tmp_path, {
        "/proc/sys/kernel/osrelease": "6.12.48+deb13-amd64\n",
        "/proc/sys/user/max_user_namespaces": "63368\n",
        "/proc/sys/kernel/unprivileged_userns_clone": "1\n",
        "/proc/self/mountinfo": MOUNTINFO_V2,
        "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
        "/etc/subuid": "# comment\ndebian:100000:65536\nu7s:120000:65536\n",
    })
    facts = host_facts.gather_preflight_facts("u7s", root)
    assert facts["kernel_release"] == "6.12.48+deb13-amd64"
    assert facts["subuid"] == [
        {"owner": "debian", "start": 100000, "count": 65536, "line": 2},
        {"owner": "u7s", "start": 120000, "count": 65536, "line": 3},
    ]
    assert facts["subgid"] == []
    facts.update(distribution="Debian", distribution_major_version="13", distribution_version="13.1")
    problems = preflight_problems(facts)
    assert len(problems) == 1
    assert "line 3 'u7s:120000:65536' overlaps line 2 'debian:100000:65536'" in problems[0]


class TestAccountsAndLoginDefs:
    def test_accounts_below_another_root_come_from_its_files(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {
            "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/sh\nbroken\n",
            "/etc/group": "root:x:0:\nusers:x:100:\n",
        })
        assert host_facts.read_accounts(root) == {
            "users": [{"name": "root", "id": 0}, {"name": "alice", "id": 1001}],
            "groups": [{"name": "root", "id": 0}, {"name": "users", "id": 100}],
        }

    def test_accounts_of_this_machine_through_nss(self) -> None:
        accounts = host_facts.read_accounts("/")
        assert {"name": "root", "id": 0} in accounts["users"]
        assert any(group["id"] == 0 for group in accounts["groups"])

    def test_login_defs(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {"/etc/login.defs": "UID_MIN 2000\nSUB_GID_MIN 300000\n"})
        values = host_facts.read_login_defs(root)
        assert values["UID_MIN"] == 2000 and values["SUB_GID_MIN"] == 300000 and values["GID_MIN"] == 1000
        assert host_facts.read_login_defs(str(tmp_path / "none"))["SUB_UID_MIN"] == 100000


class TestCgroupV1Owners:
    def test_hierarchies_with_their_owner(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {"/sys/fs/cgroup/cpu,cpuacct/tasks": "", "/sys/fs/cgroup/memory/tasks": ""})
        mounts = host_facts.parse_mountinfo(MOUNTINFO_V1)
        hierarchies = host_facts.v1_hierarchies(root, mounts)
        uid = (tmp_path / "sys/fs/cgroup/memory").stat().st_uid
        assert [(item["mountpoint"], item["controllers"], item["uid"]) for item in hierarchies] == [
            ("/sys/fs/cgroup/cpu,cpuacct", ["cpu", "cpuacct"], uid),
            ("/sys/fs/cgroup/memory", ["memory"], uid),
        ]  # name=systemd binds no controller

    def test_a_hierarchy_that_cannot_be_read_has_no_owner(self, tmp_path: pathlib.Path) -> None:
        hierarchies = host_facts.v1_hierarchies(str(tmp_path), host_facts.parse_mountinfo(MOUNTINFO_V1))
        assert all(item["uid"] is None and item["owner"] is None for item in hierarchies)

    def test_chown_unit(self, tmp_path: pathlib.Path) -> None:
        assert host_facts.read_cgroup_v1_chown_unit(str(tmp_path)) is None
        root = make_root(tmp_path, {host_facts.CGROUP_V1_CHOWN_UNIT: (
            "[Unit]\nDescription=Hand cgroup v1 controllers to alice\n[Service]\n"
            "ExecStart=/bin/chown -R 1002:1002 /sys/fs/cgroup/cpu /sys/fs/cgroup/memory\n")})
        assert host_facts.read_cgroup_v1_chown_unit(root) == {
            "path": "/etc/systemd/system/u7s-cgroup-v1-chown.service", "uid": 1002, "user": "alice"}


# Ubuntu 24.04's own profile for rootlesskit (apparmor 4.0), and other shapes of profile headers.
UBUNTU_ROOTLESSKIT = """\
# This profile allows everything and only exists to give the
# application a name instead of having the label "unconfined"

abi <abi/4.0>,
include <tunables/global>

profile rootlesskit /usr/bin/rootlesskit flags=(unconfined) {
  userns,

  # Site-specific additions and overrides. See local/README for details.
  include if exists <local/rootlesskit>
}
"""


class TestAppArmorProfiles:
    def test_profiles_attaching_to_the_binaries(self, tmp_path: pathlib.Path) -> None:
        root = make_root(tmp_path, {
            "/etc/apparmor.d/rootlesskit": UBUNTU_ROOTLESSKIT,
            "/etc/apparmor.d/usr.local.bin.slirp4netns": "/usr/local/bin/slirp4netns {\n  userns,\n}\n",
            "/etc/apparmor.d/braces": "profile b /{,usr/}sbin/helper flags=(complain) { # comment\n}\n",
            "/etc/apparmor.d/u7s-userns": "profile u7s-userns-x /opt/x flags=(unconfined) {\n}\n",
            "/etc/apparmor.d/disabled-one": "profile d /opt/d {\n}\n",
            "/etc/apparmor.d/disable/disabled-one": "",
            "/etc/apparmor.d/abstractions/base": "profile z /opt/z {\n}\n",
            "/etc/apparmor.d/other": "profile other /usr/bin/other {\n  /usr/bin/rootlesskit ix,\n}\n",
        })
        binaries = ["/usr/bin/rootlesskit", "/usr/local/bin/slirp4netns", "/sbin/helper", "/usr/sbin/helper",
                    "/opt/x", "/opt/d", "/opt/z", "/usr/bin/nothing"]
        assert host_facts.apparmor_profiles_for(root, binaries) == [
            {"binary": "/sbin/helper", "profile": "b", "file": "/etc/apparmor.d/braces"},
            {"binary": "/usr/sbin/helper", "profile": "b", "file": "/etc/apparmor.d/braces"},
            {"binary": "/usr/bin/rootlesskit", "profile": "rootlesskit", "file": "/etc/apparmor.d/rootlesskit"},
            {"binary": "/usr/local/bin/slirp4netns", "profile": "/usr/local/bin/slirp4netns",
             "file": "/etc/apparmor.d/usr.local.bin.slirp4netns"},
        ]

    def test_no_apparmor_or_no_binaries(self, tmp_path: pathlib.Path) -> None:
        assert host_facts.apparmor_profiles_for(str(tmp_path), ["/usr/bin/rootlesskit"]) == []
        root = make_root(tmp_path, {"/etc/apparmor.d/rootlesskit": UBUNTU_ROOTLESSKIT})
        assert host_facts.apparmor_profiles_for(root, []) == []

    @pytest.mark.parametrize("line, expected", [
        ("profile rootlesskit /usr/bin/rootlesskit flags=(unconfined) {", ("rootlesskit", "/usr/bin/rootlesskit")),
        ("profile child {", ("child", None)),
        ("/usr/bin/foo flags=(attach_disconnected, mediate_deleted) {", ("/usr/bin/foo", "/usr/bin/foo")),
        ("  /usr/bin/foo ix,", None),
        ("  if defined @{x} {", None),
    ])
    def test_profile_headers(self, line: str, expected) -> None:
        assert host_facts.parse_profile_header(line) == expected
