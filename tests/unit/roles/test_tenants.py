# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Two users' clusters on the same hosts (README "Several users' clusters on the same hosts"), on cgroup v2.

What can be checked without hosts: each inventory plans without problems, and
the two clusters publish no port twice on one host address.
"""

from __future__ import annotations

import copy

from cluster_inventory import REPO, plan_of

from ansible_collections.u7s.cluster.plugins.module_utils.ports import port_conflicts
from ansible_collections.u7s.cluster.plugins.module_utils.preflight import preflight_problems

HOSTS = ("node1", "node2", "node3")
TEAM_A = {"u7s_user": "team-a", "u7s_port_etcd": 2379, "u7s_port_apiserver": 6443, "u7s_port_kubelet": 10250,
          "u7s_port_vxlan": 8472}
TEAM_B = {"u7s_user": "team-b", "u7s_port_etcd": 12379, "u7s_port_apiserver": 16443, "u7s_port_kubelet": 20250,
          "u7s_port_vxlan": 18472}


def published_on_each_host(*inventories: dict) -> list[dict]:
    """port_conflicts records: every tenant's published ports on every host, by the host's address."""
    records = []
    for inventory in inventories:
        plan = plan_of(inventory, names=HOSTS)
        assert plan["problems"] == [], plan["problems"]
        for name, node in plan["hosts"].items():
            records.append({
                "name": name, "address": node["host_address"], "user": node["user"],
                "ports": {"%s (%s)" % (label, "%d/%s" % (port["port"], port["protocol"])): port["port"]
                          for label, port in zip(node["port_names"].values(), node["published_ports"])},
            })
    return records


def protocols(records: list) -> dict:
    return {key: key.rsplit("/", 1)[1].rstrip(")") for record in records for key in record["ports"]}


def test_two_tenants_with_distinct_ports_share_the_hosts():
    records = published_on_each_host(TEAM_A, TEAM_B)
    assert port_conflicts(records, protocols(records)) == []


def test_a_second_tenant_with_the_first_ones_ports_collides():
    records = published_on_each_host(TEAM_A, dict(TEAM_A, u7s_user="team-b"))
    problems = port_conflicts(records, protocols(records))
    # The kubelet and VXLAN ports on every host, the API server on the control plane only.
    assert len(problems) == 1 + 2 * len(HOSTS)
    assert "by host node1 (user team-a)" in problems[0] and "host node1 (user team-b)" in problems[0]


def test_cgroup_v2_preflight_holds_nothing_against_a_second_tenant():
    facts = {"cgroup": {"version": "v2", "controllers": ["cpu", "cpuset", "io", "memory", "pids"],
                        "v1_controllers": [], "mountpoint": "/sys/fs/cgroup", "v1_hierarchies": [],
                        "v1_chown_unit": None},
             "user": {"name": "team-b", "exists": True, "uid": 1002, "gid": 1002},
             "subuid": [{"owner": "team-a", "start": 100000, "count": 65536, "line": 1}],
             "subgid": [{"owner": "team-a", "start": 100000, "count": 65536, "line": 1}],
             "accounts": {"users": [{"name": "team-a", "id": 1001}, {"name": "team-b", "id": 1002}],
                          "groups": [{"name": "team-a", "id": 1001}, {"name": "team-b", "id": 1002}]},
             "sysctl": {"net.ipv4.ip_unprivileged_port_start": 1024}}
    plan = plan_of(TEAM_B, names=HOSTS)
    node = plan["hosts"]["node1"]
    assert preflight_problems(copy.deepcopy(facts), {"published_ports": node["published_ports"],
                                                     "port_names": node["port_names"]}) == []


def test_the_readme_shows_these_inventories():
    readme = (REPO / "README.md").read_text()
    for inventory in (TEAM_A, TEAM_B):
        for name, value in inventory.items():
            assert "%s: %s" % (name, value) in readme, (name, value)
