# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Preflight decisions on recorded host facts (fixtures/preflight/*.json).

debian12_hybrid_recorded.json was recorded on the CI machine with the
preflight_facts module plus the setup facts; the others follow what those
releases report (their sysctls, cgroup layouts and subuid files).
"""

from __future__ import annotations

import copy
import json
import os
import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.preflight import (
    apparmor_userns_profiles,
    is_supported_os,
    merge_options,
    needs_apparmor_userns_profile,
    preflight_problems,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "preflight")


def load(name: str) -> dict[str, t.Any]:
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as handle:
        return json.load(handle)


def only(problems: list[str], needle: str) -> str:
    """The single problem that mentions needle."""
    matching = [problem for problem in problems if needle in problem]
    assert len(matching) == 1, problems
    return matching[0]


def test_every_problem_carries_a_fix() -> None:
    for name in sorted(os.listdir(FIXTURES)):
        facts = load(name[: -len(".json")])
        for problem in preflight_problems(facts):
            assert "Fix: " in problem, problem


class TestDebian13:
    def test_cgroup_v2_host_passes(self) -> None:
        assert preflight_problems(load("debian13_cgroup_v2")) == []

    def test_no_apparmor_profile_needed(self) -> None:
        assert needs_apparmor_userns_profile(load("debian13_cgroup_v2")) is False


class TestUbuntu2404:
    def test_apparmor_restriction_is_not_a_problem(self) -> None:
        assert preflight_problems(load("ubuntu2404_apparmor_restricted")) == []

    def test_needs_apparmor_profile(self) -> None:
        assert needs_apparmor_userns_profile(load("ubuntu2404_apparmor_restricted")) is True

    def test_apparmor_sysctl_absent_or_zero(self) -> None:
        facts = load("ubuntu2404_apparmor_restricted")
        facts["sysctl"]["kernel.apparmor_restrict_unprivileged_userns"] = 0
        assert needs_apparmor_userns_profile(facts) is False
        facts["sysctl"]["kernel.apparmor_restrict_unprivileged_userns"] = None
        assert needs_apparmor_userns_profile(facts) is False
        assert needs_apparmor_userns_profile({}) is False


class TestUserNamespaces:
    def test_max_user_namespaces_zero(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["sysctl"]["user.max_user_namespaces"] = 0
        problem = only(preflight_problems(facts), "user.max_user_namespaces")
        assert "disabled" in problem
        assert "Fix: sysctl -w user.max_user_namespaces=28633" in problem

    def test_unprivileged_userns_clone_zero(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["sysctl"]["kernel.unprivileged_userns_clone"] = 0
        problems = preflight_problems(facts)
        assert len(problems) == 1
        assert "Fix: sysctl -w kernel.unprivileged_userns_clone=1" in problems[0]

    def test_sysctls_recorded_as_strings_count_too(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["sysctl"]["kernel.unprivileged_userns_clone"] = "0"
        assert len(preflight_problems(facts)) == 1

    def test_absent_sysctl_is_unknown_not_a_problem(self) -> None:
        facts = load("rocky9_no_user_yet")
        assert facts["sysctl"]["kernel.unprivileged_userns_clone"] is None
        assert preflight_problems(facts, {"create_user": True}) == []


class TestCgroup:
    def test_v1_refused(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["cgroup"] = {"version": "v1", "controllers": [], "v1_controllers": ["cpu", "memory"], "mountpoint": None}
        problem = only(preflight_problems(facts), "cgroup v1")
        assert "systemd.unified_cgroup_hierarchy=1" in problem

    def test_v1_allowed(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["cgroup"] = {"version": "v1", "controllers": [], "v1_controllers": ["cpu", "memory"], "mountpoint": None}
        assert preflight_problems(facts, {"allow_cgroup_v1": True}) == []

    def test_hybrid_refused_unless_allowed(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["cgroup"] = load("debian11_hybrid")["cgroup"]
        assert "hybrid" in only(preflight_problems(facts), "cgroup")
        assert preflight_problems(facts, {"allow_cgroup_v1": True}) == []

    def test_recorded_ci_machine_is_hybrid(self) -> None:
        facts = load("debian12_hybrid_recorded")
        problems = preflight_problems(facts)
        assert len(problems) == 1
        assert problems[0].startswith("The host uses a hybrid cgroup v1/v2 layout")
        assert preflight_problems(facts, {"allow_cgroup_v1": True}) == []

    def test_missing_controllers_are_named(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["cgroup"]["controllers"] = ["cpu", "memory", "pids"]
        problem = only(preflight_problems(facts), "controllers")
        assert "cpuset, io are missing from /sys/fs/cgroup/cgroup.controllers" in problem

    def test_missing_controllers_not_excused_by_allow_cgroup_v1(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["cgroup"]["controllers"] = []
        problem = only(preflight_problems(facts, {"allow_cgroup_v1": True}), "controllers")
        assert "cpu, cpuset, io, memory, pids" in problem

    def test_required_controllers_option(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["cgroup"]["controllers"] = ["cpu", "memory"]
        assert preflight_problems(facts, {"required_controllers": ["cpu", "memory"]}) == []


class TestOperatingSystem:
    def test_centos7_unsupported_with_everything_else_wrong(self) -> None:
        problems = preflight_problems(load("centos7_cgroup_v1"))
        assert "CentOS 7.9" in only(problems, "Unsupported operating system")
        only(problems, "user.max_user_namespaces = 0")
        only(problems, "cgroup v1")
        assert len(problems) == 3

    def test_debian11_unsupported_hybrid_and_userns_clone(self) -> None:
        problems = preflight_problems(load("debian11_hybrid"))
        assert "Debian 11.11" in only(problems, "Unsupported operating system")
        only(problems, "kernel.unprivileged_userns_clone = 0")
        only(problems, "hybrid")
        assert len(problems) == 3

    def test_allow_unsupported_os(self) -> None:
        problems = preflight_problems(load("debian11_hybrid"), {"allow_unsupported_os": True})
        assert not [problem for problem in problems if "Unsupported" in problem]

    @pytest.mark.parametrize(
        "distribution, major, version, supported",
        [
            ("Debian", "12", "12.12", True),
            ("Debian", "13", "13.1", True),
            ("Debian", "11", "11.11", False),
            ("Debian", "14", "14.0", False),
            ("Ubuntu", "22", "22.04", True),
            ("Ubuntu", "24", "24.04", True),
            ("Ubuntu", "26", "26.04", True),
            ("Ubuntu", "20", "20.04", False),
            ("Ubuntu", "23", "23.10", False),
            ("Ubuntu", "24", "24.10", False),
            ("Ubuntu", "25", "25.04", False),
            ("RedHat", "9", "9.6", True),
            ("Rocky", "9", "9.6", True),
            ("AlmaLinux", "9", "9.6", True),
            ("CentOS", "9", "9", True),
            ("CentOS", "7", "7.9.2009", False),
            ("RedHat", "8", "8.10", False),
            ("Fedora", "42", "42", False),
            ("OracleLinux", "9", "9.6", False),
            ("", "", "", False),
        ],
    )
    def test_support_matrix(self, distribution: str, major: str, version: str, supported: bool) -> None:
        facts = {
            "distribution": distribution,
            "distribution_major_version": major,
            "distribution_version": version,
        }
        assert is_supported_os(facts) is supported

    def test_without_distribution_facts_os_is_not_judged(self) -> None:
        facts = load("debian13_cgroup_v2")
        for key in ("distribution", "distribution_major_version", "distribution_version", "os_family"):
            del facts[key]
        assert preflight_problems(facts) == []


class TestUser:
    def test_missing_user_is_a_problem(self) -> None:
        problem = only(preflight_problems(load("rocky9_no_user_yet")), "does not exist")
        assert "'u7s'" in problem and "host_prereqs_user_create: true" in problem

    def test_missing_user_is_fine_when_the_role_creates_it(self) -> None:
        assert preflight_problems(load("rocky9_no_user_yet"), {"create_user": True}) == []

    def test_root_is_refused(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["user"].update(name="root", uid=0)
        only(preflight_problems(facts), "is root")


class TestSubid:
    def test_overlap_with_another_user(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["subuid"][1]["start"] = 150000
        problem = only(preflight_problems(facts), "overlaps")
        assert problem.startswith("/etc/subuid:")
        assert "line 2 'u7s:150000:65536'" in problem
        assert "line 1 'debian:100000:65536'" in problem

    def test_several_ranges_by_name_and_uid(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["subgid"].append({"owner": "1001", "start": 300000, "count": 65536, "line": 3})
        problem = only(preflight_problems(facts), "entries")
        assert problem.startswith("/etc/subgid: user 'u7s' has 2 entries")

    def test_range_smaller_than_required(self) -> None:
        facts = load("debian13_cgroup_v2")
        problems = preflight_problems(facts, {"subid_count": 131072})
        assert len(problems) == 2  # subuid and subgid
        assert all("only 65536" in problem and "131072" in problem for problem in problems)

    def test_missing_range_is_fine_when_managed(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["subuid"] = facts["subuid"][:1]
        assert preflight_problems(facts) == []
        problem = only(preflight_problems(facts, {"manage_subid": False}), "no subordinate ID range")
        assert "usermod --add-subuids" in problem

    @pytest.mark.parametrize("count", [65535, 1000, 0, -1, "65535", "many", True, 65536.5])
    def test_count_below_what_the_node_images_need_is_refused(self, count: t.Any) -> None:
        """The node's images own files up to ID 65535: a smaller range cannot hold them."""
        problem = only(preflight_problems(load("debian13_cgroup_v2"), {"subid_count": count}),
                       "host_prereqs_subid_count")
        assert problem == (
            "host_prereqs_subid_count is %r; a rootless engine needs at least 65536 subordinate IDs (the node's "
            "images use IDs up to 65535). Fix: set host_prereqs_subid_count to 65536 or more." % (count,))

    def test_a_refused_count_is_the_only_subid_problem(self) -> None:
        """The ranges are not checked against a count that is itself refused."""
        facts = load("debian13_cgroup_v2")
        facts["subuid"][1]["start"] = 150000  # an overlap that a valid count reports
        problems = [problem for problem in preflight_problems(facts, {"subid_count": 100})
                    if "subuid" in problem or "subgid" in problem or "subid" in problem]
        assert len(problems) == 1 and problems[0].startswith("host_prereqs_subid_count is 100;")

    @pytest.mark.parametrize("count", [65536, "65536", None])
    def test_count_of_65536_is_accepted(self, count: t.Any) -> None:
        """None means the default, 65536."""
        assert preflight_problems(load("debian13_cgroup_v2"), {"subid_count": count}) == []

    def test_user_missing_and_range_recorded_by_name(self) -> None:
        facts = load("rocky9_no_user_yet")
        facts["subuid"].append({"owner": "u7s", "start": 100000, "count": 65536, "line": 2})
        problem = only(preflight_problems(facts, {"create_user": True}), "overlaps")
        assert "rocky" in problem


def test_options_none_values_mean_defaults() -> None:
    merged = merge_options({"allow_cgroup_v1": None, "subid_count": 70000})
    assert merged["allow_cgroup_v1"] is False
    assert merged["subid_count"] == 70000
    assert merged["required_controllers"] == ["cpu", "cpuset", "io", "memory", "pids"]


def test_facts_are_not_modified() -> None:
    facts = load("centos7_cgroup_v1")
    before = copy.deepcopy(facts)
    preflight_problems(facts, {"create_user": True})
    assert facts == before


# --- issue 12: the host's own IDs, cgroup v1 tenants, unprivileged ports, AppArmor profile names -----

HOST_USERS = [{"name": "root", "id": 0}, {"name": "debian", "id": 1000}, {"name": "u7s", "id": 1001},
              {"name": "alice", "id": 170000}]
HOST_GROUPS = [{"name": "root", "id": 0}, {"name": "u7s", "id": 1001}]


def with_accounts(facts: dict[str, t.Any]) -> dict[str, t.Any]:
    facts["accounts"] = {"users": copy.deepcopy(HOST_USERS), "groups": copy.deepcopy(HOST_GROUPS)}
    facts["login_defs"] = {"UID_MIN": 1000, "GID_MIN": 1000, "SUB_UID_MIN": 100000, "SUB_GID_MIN": 100000}
    return facts


class TestSubidAgainstTheHostsIds:
    def test_a_recorded_range_over_an_account_is_refused(self) -> None:
        facts = with_accounts(load("debian13_cgroup_v2"))
        # u7s:165536:65536 holds alice's uid 170000; the gids hold no group.
        problem = only(preflight_problems(facts, {"host": "node1"}), "alice")
        assert problem.startswith("Host node1: /etc/subuid line 2 'u7s:165536:65536' gives user 'u7s' "
                                  "the subordinate UIDs 165536-231071")
        assert "the UIDs of the account alice (170000)" in problem
        assert "replace that line by u7s:170001:65536" in problem  # after debian's range and alice

    def test_a_range_from_1000_is_refused_in_both_files(self) -> None:
        facts = with_accounts(load("debian13_cgroup_v2"))
        for kind in ("subuid", "subgid"):
            facts[kind][1]["start"] = 500
        problems = [problem for problem in preflight_problems(facts) if "gives user 'u7s'" in problem]
        assert len(problems) == 2
        assert "system UIDs 0-999" in problems[0] and "accounts debian (1000), u7s (1001)" in problems[0]
        assert "system GIDs 0-999" in problems[1] and "the group u7s (1001)" in problems[1]

    def test_the_range_the_role_would_allocate_is_clear(self) -> None:
        facts = with_accounts(load("debian13_cgroup_v2"))
        facts["subuid"] = facts["subuid"][:1]
        assert preflight_problems(facts) == []

    def test_no_free_range_left_is_refused(self) -> None:
        facts = with_accounts(load("debian13_cgroup_v2"))
        facts["subuid"] = [{"owner": "debian", "start": 100000, "count": 2 ** 32 - 100001, "line": 1}]
        problem = only(preflight_problems(facts, {"host": "node1"}), "would give user")
        assert problem.startswith("Host node1: /etc/subuid: the role host_prereqs would give user 'u7s'")
        assert "host_prereqs_subid_count" in problem and "Fix:" in problem

    def test_without_account_facts_nothing_is_held_against_the_host(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["subuid"][1]["start"] = 500
        assert [problem for problem in preflight_problems(facts) if "gives user" in problem] == []


V1_HIERARCHIES = [
    {"mountpoint": "/sys/fs/cgroup/cpu,cpuacct", "controllers": ["cpu", "cpuacct"], "uid": 1002, "owner": "alice"},
    {"mountpoint": "/sys/fs/cgroup/memory", "controllers": ["memory"], "uid": 1002, "owner": "alice"},
    {"mountpoint": "/sys/fs/cgroup/pids", "controllers": ["pids"], "uid": 0, "owner": "root"},
]
ALICE_UNIT = {"path": "/etc/systemd/system/u7s-cgroup-v1-chown.service", "uid": 1002, "user": "alice"}


class TestCgroupV1Tenants:
    def facts(self, hierarchies=None, unit=None) -> dict[str, t.Any]:
        facts = load("centos7_cgroup_v1")
        facts.update(distribution="Debian", distribution_major_version="12", distribution_version="12.5")
        facts["sysctl"] = {"user.max_user_namespaces": 63368}
        facts["user"] = {"name": "u7s", "exists": True, "uid": 1001, "gid": 1001, "home": "/home/u7s",
                         "shell": "/bin/bash"}
        facts["cgroup"]["v1_hierarchies"] = copy.deepcopy(V1_HIERARCHIES if hierarchies is None else hierarchies)
        facts["cgroup"]["v1_chown_unit"] = unit
        return facts

    def test_hierarchies_handed_to_another_user_are_refused(self) -> None:
        problem = only(preflight_problems(self.facts(), {"allow_cgroup_v1": True, "host": "node1"}), "cgroup v1")
        assert problem.startswith("Host node1: The host uses cgroup v1, where controllers cannot be delegated")
        assert "alice (uid 1002) owns /sys/fs/cgroup/cpu,cpuacct, /sys/fs/cgroup/memory" in problem
        assert "u7s_user u7s would fail at kubeadm init" in problem
        assert "host_prereqs_cgroup_v1_chown" in problem
        assert "Fix: run this cluster on other hosts, or as alice (u7s_user)" in problem
        assert "cgroup v2" in problem.split("Fix:")[1]

    def test_the_chown_unit_of_another_user_is_refused(self) -> None:
        facts = self.facts(hierarchies=[], unit=ALICE_UNIT)
        problem = only(preflight_problems(facts, {"allow_cgroup_v1": True}), "cgroup v1")
        assert "/etc/systemd/system/u7s-cgroup-v1-chown.service hands them to alice (uid 1002) at every boot" in problem

    def test_the_users_own_delegation_is_fine(self) -> None:
        mine = [dict(item, uid=1001, owner="u7s") if item["uid"] else item for item in V1_HIERARCHIES]
        unit = dict(ALICE_UNIT, uid=1001, user="u7s")
        assert preflight_problems(self.facts(mine, unit), {"allow_cgroup_v1": True}) == []

    def test_a_user_not_created_yet_is_matched_by_name_in_the_unit(self) -> None:
        facts = self.facts(hierarchies=[], unit=dict(ALICE_UNIT, user="u7s"))
        facts["user"] = {"name": "u7s", "exists": False, "uid": None, "gid": None, "home": None, "shell": None}
        assert preflight_problems(facts, {"allow_cgroup_v1": True, "create_user": True}) == []

    def test_root_owned_hierarchies_are_fine(self) -> None:
        root_owned = [dict(item, uid=0, owner="root") for item in V1_HIERARCHIES]
        assert preflight_problems(self.facts(root_owned), {"allow_cgroup_v1": True}) == []

    def test_only_the_cgroup_v1_refusal_when_v1_is_not_accepted(self) -> None:
        problems = preflight_problems(self.facts())
        assert len(problems) == 1 and "u7s_allow_cgroup_v1" in problems[0]

    def test_cgroup_v2_hosts_carry_several_tenants(self) -> None:
        facts = load("debian13_cgroup_v2")
        facts["cgroup"]["v1_hierarchies"] = []
        facts["cgroup"]["v1_chown_unit"] = ALICE_UNIT  # a leftover unit means nothing on cgroup v2
        assert preflight_problems(facts, {"allow_cgroup_v1": True}) == []


PORTS = [{"port": 2379, "protocol": "tcp"}, {"port": 6443, "protocol": "tcp"},
         {"port": 10250, "protocol": "tcp"}, {"port": 8472, "protocol": "udp"}]
PORT_NAMES = {"2379/tcp": "u7s_port_etcd", "6443/tcp": "u7s_port_apiserver", "10250/tcp": "u7s_port_kubelet",
              "8472/udp": "u7s_port_vxlan"}


class TestUnprivilegedPortStart:
    def problems(self, start: t.Any, ports=None) -> list[str]:
        facts = load("debian13_cgroup_v2")
        facts["sysctl"]["net.ipv4.ip_unprivileged_port_start"] = start
        return preflight_problems(facts, {"host": "node1", "published_ports": PORTS if ports is None else ports,
                                          "port_names": PORT_NAMES})

    def test_ports_below_the_hosts_start_are_refused(self) -> None:
        (problem,) = self.problems(8000)
        assert problem == (
            "Host node1: ports 2379/tcp (u7s_port_etcd), 6443/tcp (u7s_port_apiserver) are below "
            "net.ipv4.ip_unprivileged_port_start (8000) on this host, so the rootless engine cannot publish them. "
            "Fix: give the cluster ports from 8000 on (u7s_port_apiserver, u7s_port_etcd), or lower "
            "net.ipv4.ip_unprivileged_port_start on this host to 2379 (sysctl -w, and persist it in /etc/sysctl.d/).")

    def test_one_port_and_an_extra_port(self) -> None:
        (problem,) = self.problems(3000, [{"port": 2500, "protocol": "udp"}, {"port": 3000, "protocol": "tcp"}])
        assert "port 2500/udp (u7s_extra_ports) is below" in problem and "publish it." in problem

    @pytest.mark.parametrize("start", [1024, 0, None, "2379"])
    def test_ports_from_the_start_on_are_fine(self, start: t.Any) -> None:
        assert self.problems(start) == []

    def test_no_ports_no_problem(self) -> None:
        assert self.problems(65535, []) == []


def test_unsupported_os_names_the_role_variable() -> None:
    facts = load("debian13_cgroup_v2")
    facts["distribution_major_version"] = "10"
    problem = only(preflight_problems(facts), "Unsupported")
    assert "host_prereqs_allow_unsupported_os: true" in problem
    assert preflight_problems(facts, {"allow_unsupported_os": True}) == []


class TestAppArmorProfileNames:
    def test_one_profile_per_binary_named_by_basename(self) -> None:
        assert apparmor_userns_profiles(["/usr/bin/rootlesskit", "/usr/local/bin/slirp4netns"]) == [
            {"name": "u7s-userns-rootlesskit", "binary": "/usr/bin/rootlesskit"},
            {"name": "u7s-userns-slirp4netns", "binary": "/usr/local/bin/slirp4netns"},
        ]

    def test_binaries_sharing_a_basename_get_distinct_names(self) -> None:
        profiles = apparmor_userns_profiles(["/usr/bin/rootlesskit", "/opt/rootless/bin/rootlesskit",
                                             "/usr/bin/rootlesskit/"])
        names = [profile["name"] for profile in profiles]
        assert len(profiles) == 2 and len(set(names)) == 2
        assert all(name.startswith("u7s-userns-rootlesskit-") and len(name) == len("u7s-userns-rootlesskit-") + 8
                   for name in names)
        # Stable from run to run: the name depends on the path only.
        assert apparmor_userns_profiles(["/opt/rootless/bin/rootlesskit", "/usr/bin/rootlesskit"])[1] == profiles[0]

    def test_binaries_the_distribution_covers_get_none(self) -> None:
        ubuntu = [{"binary": "/usr/bin/rootlesskit", "profile": "rootlesskit", "file": "/etc/apparmor.d/rootlesskit"}]
        assert apparmor_userns_profiles(["/usr/bin/rootlesskit"], ubuntu) == []
        assert apparmor_userns_profiles(["/usr/bin/rootlesskit", "/opt/bin/rootlesskit"], ubuntu) == [
            {"name": "u7s-userns-rootlesskit-%s" % apparmor_userns_profiles(
                ["/opt/bin/rootlesskit", "/x/rootlesskit"])[0]["name"].rsplit("-", 1)[1],
             "binary": "/opt/bin/rootlesskit"}]
