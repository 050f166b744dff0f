# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Several control planes: the counts, ports, firewall sources, endpoint, hosts block and quorum.

host1, host2, ... have the addresses 192.0.2.11, 192.0.2.12, ... (cluster_inventory.py).
"""

from __future__ import annotations

import subprocess
import time
import typing as t
from pathlib import Path

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.control_planes import (
    HOSTS_BEGIN,
    HOSTS_END,
    endpoint_name_problem,
    etcd_members,
    hosts_block,
    hosts_lines,
    init_host,
    members_of_host,
    merge_hosts,
    quorum,
    removal_problem,
)
from ansible_collections.u7s.cluster.plugins.module_utils.firewall import nft_ruleset
from cluster_inventory import address_of, cluster_groups, plan, records_of

REPO = Path(__file__).resolve().parents[4]
MERGE_SCRIPT = REPO / "roles" / "node" / "files" / "u7s-hosts-merge"
FOUR = ("host1", "host2", "host3", "host4")
SIX = tuple("host%d" % index for index in range(1, 7))


def ha_plan(names: t.Sequence[str] = FOUR, control: int = 3, group_vars: dict[str, t.Any] | None = None,
            **record: t.Any) -> dict[str, t.Any]:
    return plan(records_of(names, group_vars, **record), cluster_groups(names, control_plane=list(names[:control])))


@pytest.mark.parametrize("count", [0, 2, 4, 6])
def test_control_plane_counts_other_than_1_3_5_are_refused(count: int) -> None:
    names = SIX + ("host7",)
    result = ha_plan(names, count)
    assert len(result["problems"]) == 1
    text = result["problems"][0]
    assert "must hold 1, 3 or 5 hosts, but holds %d" % count in text
    assert "u7s_control_plane_group" in text and "majority" in text and "Fix:" in text
    if count:
        assert "host1" in text


@pytest.mark.parametrize("count", [1, 3, 5])
def test_control_plane_counts_1_3_5_are_planned(count: int) -> None:
    result = ha_plan(SIX, count)
    assert result["problems"] == []
    assert result["control_plane"] == "host1"  # the first in inventory order runs kubeadm init
    assert result["control_planes"] == list(SIX[:count])
    assert result["control_plane_addresses"] == [address_of(index) for index in range(count)]


def test_the_group_order_decides_which_host_inits() -> None:
    records = records_of(FOUR)
    result = plan(records, cluster_groups(FOUR, control_plane=["host3", "host1", "host2"]))
    assert result["control_plane"] == "host3"
    assert result["control_planes"] == ["host3", "host1", "host2"]


def test_a_control_plane_outside_the_cluster_group_is_refused() -> None:
    groups = cluster_groups(FOUR, control_plane=["host1", "host2", "other"])
    result = plan(records_of(FOUR), groups)
    assert any("other" in text and "u7s_cluster_group" in text for text in result["problems"])


def test_one_control_plane_is_planned_as_before() -> None:
    result = ha_plan(FOUR, 1)
    assert result["api_endpoint"] == "192.0.2.11:6443"
    assert result["endpoint_hosts"] is None and result["controller_hosts_file"] == ""
    assert "api_endpoint" not in result["recorded_settings"]
    host1 = result["hosts"]["host1"]
    assert host1["publish_specs"] == ["192.0.2.11:6443:6443/tcp", "192.0.2.11:10250:10250/tcp",
                                      "192.0.2.11:8472:8472/udp"]
    assert [port["sources"] for port in host1["filtered_ports"]] == ["apiserver", "cluster", "cluster"]


def test_several_control_planes_publish_both_etcd_ports_for_the_control_planes_only() -> None:
    result = ha_plan()
    for index, name in enumerate(FOUR[:3]):
        address = address_of(index)
        assert result["hosts"][name]["publish_specs"] == [
            "%s:2379:2379/tcp" % address, "%s:2380:2380/tcp" % address, "%s:6443:6443/tcp" % address,
            "%s:10250:10250/tcp" % address, "%s:8472:8472/udp" % address]
        assert result["hosts"][name]["filtered_ports"][:3] == [
            {"port": 2379, "protocol": "tcp", "sources": "control_planes"},
            {"port": 2380, "protocol": "tcp", "sources": "control_planes"},
            {"port": 6443, "protocol": "tcp", "sources": "apiserver"}]
    assert [port["port"] for port in result["hosts"]["host4"]["published_ports"]] == [10250, 8472]


def test_several_control_planes_need_kubeadms_etcd_ports() -> None:
    result = ha_plan(group_vars={"u7s_port_etcd": 12379, "u7s_port_etcd_peer": 12380})
    assert any("u7s_port_etcd is 12379" in text and "must be 2379" in text for text in result["problems"])
    assert any("u7s_port_etcd_peer is 12380" in text and "must be 2380" in text for text in result["problems"])
    assert ha_plan(FOUR, 1, {"u7s_port_etcd": 12379, "u7s_port_etcd_peer": 12380})["problems"] == []


def test_etcd_ports_collide_with_extra_ports_on_control_planes_only() -> None:
    records = records_of(FOUR, host_vars={"host2": {"u7s_extra_ports": [{"port": 2380}]},
                                          "host4": {"u7s_extra_ports": [{"port": 2380}]}})
    result = plan(records, cluster_groups(FOUR, control_plane=["host1", "host2", "host3"]))
    assert len(result["problems"]) == 1 and "host2" in result["problems"][0]


def test_the_endpoint_of_several_control_planes_is_the_name_of_all_of_them() -> None:
    result = ha_plan()
    assert result["api_endpoint"] == "u7s-apiserver:6443"
    assert result["endpoint_hosts"] == {"name": "u7s-apiserver",
                                        "addresses": ["192.0.2.11", "192.0.2.12", "192.0.2.13"]}
    assert result["controller_hosts_file"] == "/etc/hosts"
    assert result["recorded_settings"]["api_endpoint"] == "u7s-apiserver:6443"
    named = ha_plan(group_vars={"u7s_control_plane_endpoint_name": "api.internal", "u7s_controller_hosts_file": ""})
    assert named["api_endpoint"] == "api.internal:6443" and named["controller_hosts_file"] == ""


def test_a_site_endpoint_needs_no_hosts_block() -> None:
    result = ha_plan(group_vars={"u7s_control_plane_endpoint": "api.example.org:6443"})
    assert result["api_endpoint"] == "api.example.org:6443"
    assert result["endpoint_hosts"] is None and result["controller_hosts_file"] == ""


@pytest.mark.parametrize("name", ["", "10.0.0.1", "-x", "a..b", "a_b"])
def test_an_endpoint_name_that_is_no_dns_name_is_refused(name: str) -> None:
    assert endpoint_name_problem(name)
    result = ha_plan(group_vars={"u7s_control_plane_endpoint_name": name})
    assert any("u7s_control_plane_endpoint_name" in text for text in result["problems"])


def test_a_relative_controller_hosts_file_is_refused() -> None:
    result = ha_plan(group_vars={"u7s_controller_hosts_file": "etc/hosts"})
    assert any("u7s_controller_hosts_file 'etc/hosts' is not an absolute path" in text for text in result["problems"])
    assert not ha_plan(group_vars={"u7s_controller_hosts_file": ""})["problems"]


def test_growing_a_single_control_plane_cluster_is_refused() -> None:
    records = records_of(FOUR)
    for record in records[:2]:
        record["recorded_settings"] = {"u7s_kubernetes_version": "v1.36.4"}
    result = plan(records, cluster_groups(FOUR, control_plane=["host1", "host2", "host3"]))
    assert len(result["problems"]) == 1
    assert "created with one" in result["problems"][0] and "hosts host1, host2" in result["problems"][0]


def test_adding_control_planes_to_a_cluster_of_several_is_planned() -> None:
    names = SIX
    records = records_of(names)
    for record in records[:4]:
        record["recorded_settings"] = {"api_endpoint": "u7s-apiserver:6443"}
    result = plan(records, cluster_groups(names, control_plane=list(names[:5])))
    assert result["problems"] == []
    assert result["endpoint_hosts"]["addresses"] == [address_of(index) for index in range(5)]


def test_shrinking_to_one_control_plane_or_moving_the_endpoint_is_refused() -> None:
    records = records_of(FOUR)
    records[0]["recorded_settings"] = {"api_endpoint": "u7s-apiserver:6443"}
    shrunk = plan(records, cluster_groups(FOUR))
    assert any("created with several" in text for text in shrunk["problems"])
    moved = plan(records_of(FOUR, {"u7s_control_plane_endpoint_name": "other"}),
                 cluster_groups(FOUR, control_plane=["host1", "host2", "host3"]))
    assert moved["problems"] == []  # no running node: nothing to move
    records = records_of(FOUR, {"u7s_control_plane_endpoint_name": "other"})
    records[1]["recorded_settings"] = {"api_endpoint": "u7s-apiserver:6443"}
    moved = plan(records, cluster_groups(FOUR, control_plane=["host1", "host2", "host3"]))
    assert any("other:6443" in text and "host2" in text for text in moved["problems"])


def test_a_reset_of_a_grown_inventory_is_not_refused() -> None:
    records = records_of(FOUR)
    records[0]["recorded_settings"] = {"u7s_kubernetes_version": "v1.36.4"}
    result = plan(records, cluster_groups(FOUR, control_plane=["host1", "host2", "host3"]), purpose="reset")
    assert result["problems"] == []


def test_planning_is_linear_with_five_control_planes() -> None:
    names = ["host%d" % index for index in range(1, 10001)]
    records = records_of(names, {"u7s_pod_cidr": "10.128.0.0/10", "u7s_node_subnet_pool": "172.16.0.0/12",
                                 "u7s_node_subnet_prefix": 26})
    started = time.perf_counter()
    result = plan(records, cluster_groups(names, control_plane=names[:5]))
    took = time.perf_counter() - started
    assert result["problems"] == []
    assert len(result["control_planes"]) == 5
    assert took < 10  # as the single control plane's bound (test_cluster_model): a quadratic plan takes minutes


# --- the firewall ---------------------------------------------------------------------------------

def test_the_firewall_lets_only_control_planes_reach_etcd() -> None:
    result = ha_plan()
    text = nft_ruleset("u7s", result["hosts"]["host1"]["filtered_ports"], result["host_addresses"], [],
                       result["control_plane_addresses"])
    assert "elements = { 192.0.2.11/32, 192.0.2.12/32, 192.0.2.13/32 }" in text
    assert "tcp dport 2379 ip saddr @control_planes_v4 accept" in text
    assert "tcp dport 2380 ip saddr @control_planes_v4 accept" in text
    assert 'tcp dport 2380 counter drop comment "not from the control planes"' in text


def test_the_firewall_of_one_control_plane_is_as_before() -> None:
    result = ha_plan(FOUR, 1)
    ports = result["hosts"]["host1"]["filtered_ports"]
    text = nft_ruleset("u7s", ports, result["host_addresses"], [], result["control_plane_addresses"])
    assert text == nft_ruleset("u7s", ports, result["host_addresses"], [])
    assert "control_planes" not in text


# --- the hosts block -------------------------------------------------------------------------------

def test_the_hosts_block_has_one_line_per_address() -> None:
    assert hosts_lines("u7s-apiserver", ["192.0.2.11", "192.0.2.12", "192.0.2.11"]) == [
        "192.0.2.11 u7s-apiserver", "192.0.2.12 u7s-apiserver"]
    assert hosts_block("u7s-apiserver", ["192.0.2.11"]) == "%s\n192.0.2.11 u7s-apiserver\n%s\n" % (HOSTS_BEGIN, HOSTS_END)
    with pytest.raises(ValueError):
        hosts_lines("u7s-apiserver", ["not-an-address"])


def test_merging_replaces_only_the_marked_block() -> None:
    hosts = "127.0.0.1 localhost\n10.100.0.2 u7s-host1\n"
    first = merge_hosts(hosts, hosts_block("api", ["192.0.2.11"]))
    assert first == hosts + hosts_block("api", ["192.0.2.11"])
    second = merge_hosts(first, hosts_block("api", ["192.0.2.11", "192.0.2.12"]))
    assert second == hosts + hosts_block("api", ["192.0.2.11", "192.0.2.12"])
    assert merge_hosts(second, "") == hosts


@pytest.mark.parametrize("existing", ["", "127.0.0.1 localhost\n", "127.0.0.1 localhost\n::1 localhost\n"])
def test_the_nodes_merge_script_does_what_merge_hosts_does(tmp_path: Path, existing: str) -> None:
    etc_hosts = tmp_path / "hosts"
    block_file = tmp_path / "block"
    etc_hosts.write_text(existing)
    for block in (hosts_block("api", ["192.0.2.11", "192.0.2.12"]), hosts_block("api", ["192.0.2.13"])):
        block_file.write_text(block)
        subprocess.run(["sh", str(MERGE_SCRIPT), str(block_file), str(etc_hosts)], check=True)
        assert etc_hosts.read_text() == merge_hosts(existing, block)
    block_file.unlink()
    subprocess.run(["sh", str(MERGE_SCRIPT), str(block_file), str(etc_hosts)], check=True)
    assert etc_hosts.read_text() == existing


# --- etcd's quorum on removal ----------------------------------------------------------------------

def test_quorum() -> None:
    assert [quorum(count) for count in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_a_worker_is_no_control_plane_to_refuse() -> None:
    assert removal_problem("host4", ["host1", "host2", "host3"], {"host1": True}) is None


def test_the_only_control_plane_is_not_removed() -> None:
    assert "only control plane" in removal_problem("host1", ["host1"], {"host1": True})


def test_removal_keeps_a_majority_of_the_remaining_members_healthy() -> None:
    three = ["host1", "host2", "host3"]
    assert removal_problem("host3", three, {"host1": True, "host2": True, "host3": False}) is None
    found = removal_problem("host3", three, {"host1": True, "host2": False, "host3": True})
    assert found and "host2" in found and "needs 2" in found
    five = ["host%d" % index for index in range(1, 6)]
    health = {name: True for name in five}
    health["host5"] = False
    assert removal_problem("host1", five, health) is None
    health["host4"] = False
    assert "needs 3" in removal_problem("host1", five, health)


def test_removing_one_of_three_healthy_members_is_allowed_but_not_one_of_two_that_stay_healthy() -> None:
    three = ["host1", "host2", "host3"]
    assert removal_problem("host2", three, dict.fromkeys(three, True)) is None  # 2 of 2 stay healthy
    found = removal_problem("host1", three, {"host1": True, "host2": True, "host3": False})  # 1 of 2
    assert found and "leaves 2 etcd member(s), of which 1 are healthy" in found and "host3" in found
    assert "Nothing was changed" in found and "Fix:" in found


def test_a_removal_needs_the_quorum_now() -> None:
    # Four members left by an earlier removal, two of them down: etcd cannot write, not even `member remove`.
    four = {"host1": True, "host2": True, "host3": False, "host4": False}
    found = removal_problem("host4", ["host1", "host2", "host3", "host4", "host5"], four)
    assert found and "lost its quorum" in found and "host3, host4" in found and "etcd-restore.yml" in found


def test_a_removal_without_a_member_list_is_refused() -> None:
    found = removal_problem("host2", ["host1", "host2", "host3"], {})
    assert found and "member list" in found and "Nothing was changed" in found


def test_the_member_being_removed_need_not_be_listed_any_more() -> None:
    # A reset that removed the member, then stopped: the remove-node run again finds two members.
    assert removal_problem("host3", ["host1", "host2", "host3"], {"host1": True, "host2": True}) is None


MEMBER_LIST = {
    "header": {"cluster_id": 1, "member_id": 2},
    "members": [
        {"ID": 10501334649042878790, "name": "u7s-host1", "peerURLs": ["https://192.0.2.11:2380"],
         "clientURLs": ["https://192.0.2.11:2379"]},
        {"ID": 15, "name": "u7s-host2", "peerURLs": ["https://192.0.2.12:2380"],
         "clientURLs": ["https://192.0.2.12:2379"]},
        {"ID": 255, "peerURLs": ["https://192.0.2.13:2380"]},  # added, never started
    ],
}
HEALTH = [{"endpoint": "https://192.0.2.11:2379", "health": True, "took": "2ms"},
          {"endpoint": "https://192.0.2.12:2379", "health": False, "error": "context deadline exceeded"}]
NODE_HOSTS = {"u7s-host1": "host1", "u7s-host2": "host2", "u7s-host3": "host3"}


def test_etcd_members_are_named_by_host_with_hex_ids_and_health() -> None:
    members = etcd_members(MEMBER_LIST, HEALTH, NODE_HOSTS)
    assert [(member["id"], member["host"], member["healthy"]) for member in members] == [
        ("91bc3c398fb3c146", "host1", True), ("f", "host2", False), ("ff", "unstarted member ff", False)]
    assert members[2]["peer_hosts"] == ["192.0.2.13"]
    assert {member["host"]: member["healthy"] for member in etcd_members(MEMBER_LIST, None, NODE_HOSTS)} == {
        "host1": False, "host2": False, "unstarted member ff": False}


def test_a_member_of_no_inventory_host_keeps_its_name() -> None:
    members = etcd_members(MEMBER_LIST, HEALTH, {})
    assert [member["host"] for member in members][:2] == ["u7s-host1", "u7s-host2"]


def test_a_nodes_members_are_found_by_name_or_peer_address() -> None:
    members = etcd_members(MEMBER_LIST, HEALTH, NODE_HOSTS)
    assert members_of_host(members, "u7s-host2", "192.0.2.12") == ["f"]
    assert members_of_host(members, "u7s-host3", "192.0.2.13") == ["ff"]
    assert members_of_host(members, "u7s-host4", "192.0.2.14") == []
    assert members_of_host(members, "", None) == []


def test_a_health_check_of_a_member_left_unstarted_refuses_removing_a_healthy_one() -> None:
    health = {member["host"]: member["healthy"] for member in etcd_members(MEMBER_LIST, HEALTH, NODE_HOSTS)}
    assert "lost its quorum" in removal_problem("host1", ["host1", "host2", "host3"], health)


# --- which control plane inits: only special at the bring-up ---------------------------------------

def test_the_first_control_plane_inits_a_new_cluster() -> None:
    assert init_host(["host1", "host2", "host3"], {}) == "host1"
    records = {name: {"name": name, "recorded_settings": None} for name in ("host1", "host2", "host3")}
    assert init_host(["host1", "host2", "host3"], records) == "host1"


def test_a_first_control_plane_without_a_node_joins_the_running_cluster() -> None:
    running = {"u7s_kubernetes_version": "v1.36.4"}
    records = {"host1": {"recorded_settings": None}, "host2": {"recorded_settings": running},
               "host3": {"recorded_settings": running}}
    assert init_host(["host1", "host2", "host3"], records) == "host2"
    # Outside --limit, the first one's node is unknown: it keeps its place (and nothing runs on it).
    records["host1"]["in_play"] = False
    assert init_host(["host1", "host2", "host3"], records) == "host1"


def test_the_plan_puts_the_running_control_plane_first() -> None:
    running = {"u7s_kubernetes_version": "v1.36.4", "api_endpoint": "u7s-apiserver:6443"}
    records = records_of(FOUR)
    records[1]["recorded_settings"] = records[2]["recorded_settings"] = running
    records[3]["recorded_settings"] = running
    result = plan(records, cluster_groups(FOUR, control_plane=["host1", "host2", "host3"]))
    assert result["problems"] == [], result["problems"]
    assert result["control_plane"] == "host2"
    assert result["control_planes"] == ["host2", "host1", "host3"]  # host1 joins
    assert result["control_plane_addresses"] == [address_of(index) for index in range(3)]  # inventory order
    assert result["endpoint_hosts"]["addresses"] == [address_of(index) for index in range(3)]


def test_an_even_count_names_the_replacement() -> None:
    result = ha_plan(FOUR, 2)
    assert "remove-node.yml" in result["problems"][0] and "new host" in result["problems"][0]
