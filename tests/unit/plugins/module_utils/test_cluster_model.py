# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The cluster model: every mistake an inventory can make, and the plan of one that has none.

Host records are built as the cluster_plan action builds them, from the settings
role's real spec and defaults (cluster_inventory.py); each test changes only
what it is about. host1, host2, ... have the addresses 192.0.2.11, 192.0.2.12, ...
"""

from __future__ import annotations

import time
import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils import cluster_model
from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import (
    CONTROLLER_SETTINGS,
    HOST_SETTINGS,
    RECORDED_SETTINGS,
    default_node_name,
    describe_hosts,
)
from cluster_inventory import (
    HOSTS,
    address_of,
    cluster_groups,
    plan,
    records_of,
    settings_defaults,
)

THREE = ("host1", "host2", "host3")
Edit = t.Callable[[list[dict[str, t.Any]]], None]


def planned(
    group_vars: dict[str, t.Any] | None = None,
    host_vars: dict[str, dict[str, t.Any]] | None = None,
    names: t.Sequence[str] = HOSTS,
    groups: dict[str, list[str]] | None = None,
    edit: Edit | None = None,
) -> dict[str, t.Any]:
    """The plan of an inventory; EDIT changes the host records (facts, recorded subnets) first."""
    records = records_of(names, group_vars, host_vars)
    if edit is not None:
        edit(records)
    return plan(records, groups)


def on_hosts(*names: str, **fields: t.Any) -> Edit:
    """An edit of the host records: FIELDS (facts, recorded subnet) set on NAMES."""
    def edit(records: list[dict[str, t.Any]]) -> None:
        for record in records:
            if record["name"] in names:
                record.update(fields)
    return edit


class Mistake(t.NamedTuple):
    """One kind of mistake: the inventory, the texts that pick its problem out, what the problem must name."""

    inventory: dict[str, t.Any]
    markers: tuple[str, ...]
    hosts: tuple[str, ...]
    variable: str


def mistake(marker: str | tuple[str, ...], hosts: t.Sequence[str], variable: str, **inventory: t.Any) -> Mistake:
    return Mistake(inventory, (marker,) if isinstance(marker, str) else marker, tuple(hosts), variable)


MISTAKES = {
    # Groups.
    "cluster-group-missing": mistake("has no group u7s_cluster", (), "u7s_cluster_group",
                                     groups={"all": list(HOSTS), "control_plane": ["host1"]}),
    "cluster-group-empty": mistake("holds no host", (), "u7s_cluster_group", names=(),
                                   groups={"all": [], "u7s_cluster": [], "control_plane": []}),
    "control-plane-group-missing": mistake("has no group control_plane", (), "u7s_control_plane_group",
                                           groups={"u7s_cluster": list(HOSTS)}),
    "control-plane-group-empty": mistake("holds 0", (), "u7s_control_plane_group",
                                         groups={"u7s_cluster": list(HOSTS), "control_plane": []}),
    "control-plane-group-of-two": mistake("holds 2", HOSTS, "u7s_control_plane_group",
                                          groups=cluster_groups(HOSTS, control_plane=HOSTS)),
    "control-plane-host-outside": mistake("is not in u7s_cluster", ("cp1",), "u7s_cluster_group",
                                          groups={"u7s_cluster": list(HOSTS), "control_plane": ["cp1"]}),
    # Names of earlier releases.
    "renamed-everywhere": mistake("node_host_ip is set", HOSTS, "u7s_host_ip",
                                  group_vars={"node_host_ip": "192.0.2.11"}),
    "renamed-on-one-host": mistake("Host host2: kubeadm_pod_cidr is set", ("host2",), "u7s_pod_cidr",
                                   host_vars={"host2": {"kubeadm_pod_cidr": "10.244.0.0/16"}}),
    # Types and choices.
    "port-not-a-number": mistake("u7s_port_etcd must be of type int", HOSTS, "u7s_port_etcd",
                                 group_vars={"u7s_port_etcd": "abc"}),
    "kubelet-config-a-list": mistake("u7s_kubelet_config must be a mapping", HOSTS, "u7s_kubelet_config",
                                     group_vars={"u7s_kubelet_config": ["failCgroupV1"]}),
    "kubelet-config-a-string": mistake("u7s_kubelet_config must be a mapping", HOSTS, "u7s_kubelet_config",
                                       group_vars={"u7s_kubelet_config": "failCgroupV1=false"}),
    "kubelet-config-sets-a-settings-field": mistake("u7s_kubelet_config sets cgroupDriver, port", (),
                                                    "u7s_cgroup_driver",
                                                    group_vars={"u7s_kubelet_config": {"port": 11250,
                                                                                       "cgroupDriver": "cgroupfs"}}),
    "a-bool-given-as-a-string": mistake("u7s_allow_cgroup_v1 must be true or false", HOSTS, "u7s_allow_cgroup_v1",
                                        group_vars={"u7s_allow_cgroup_v1": "false"}),
    "version-with-a-trailing-newline": mistake("is not a Kubernetes release", (), "u7s_kubernetes_version",
                                               group_vars={"u7s_kubernetes_version": "v1.36.4\n"}),
    "a-setting-changed-under-running-nodes": mistake(("u7s_port_apiserver is 7443, but the nodes on hosts host1, host2 run "
                                                      "with 6443", "set u7s_port_apiserver back to 6443"), HOSTS,
                                                     "u7s_port_apiserver", group_vars={"u7s_port_apiserver": 7443},
                                                     edit=on_hosts("host1", "host2",
                                                                   recorded_settings={"u7s_port_apiserver": 6443})),
    "new-host-while-others-are-unseen": mistake(("Host host2 needs a node subnet", "outside this run (--limit)"),
                                                ("host2", "host1"), "u7s_node_subnet",
                                                edit=on_hosts("host1", recorded_subnet=None, in_play=False)),
    "extra-ports-a-string": mistake("u7s_extra_ports must be", ("host2",), "u7s_extra_ports",
                                    host_vars={"host2": {"u7s_extra_ports": "30080"}}),
    "engine-not-a-choice": mistake("u7s_engine must be one of: docker, podman, nerdctl, got: lxc", ("host1",),
                                   "u7s_engine", host_vars={"host1": {"u7s_engine": "lxc"}}),
    "cgroup-driver-not-a-choice": mistake("u7s_cgroup_driver must be one of: systemd, cgroupfs, got: foo", HOSTS,
                                          "u7s_cgroup_driver", group_vars={"u7s_cgroup_driver": "foo"}),
    # One value for the whole cluster.
    "cluster-wide-setting-differs": mistake("must be the same on every host", HOSTS, "u7s_pod_cidr",
                                            host_vars={"host2": {"u7s_pod_cidr": "10.32.0.0/16"}}),
    # Node names.
    "node-name-twice": mistake("would all be the Kubernetes node node-a", HOSTS, "u7s_node_name",
                               host_vars={"host1": {"u7s_node_name": "node-a"}, "host2": {"u7s_node_name": "node-a"}}),
    "node-name-twice-from-hostnames": mistake("would all be the Kubernetes node u7s-web1", ("Web1", "web1"),
                                              "u7s_node_name", names=("Web1", "web1")),
    "node-name-not-a-dns-label": mistake("u7s_node_name Node_1 is not a DNS label", ("host1",), "u7s_node_name",
                                         host_vars={"host1": {"u7s_node_name": "Node_1"}}),
    "node-name-from-hostname-not-a-dns-label": mistake("the node name u7s-edge- derived from its inventory hostname",
                                                       ("edge_",), "u7s_node_name", names=("host1", "edge_")),
    "node-name-from-long-hostname": mistake("derived from its inventory hostname is not a DNS label", ("h" * 60,),
                                            "u7s_node_name", names=("host1", "h" * 60)),
    # Host addresses.
    "host-ip-not-an-address": mistake("u7s_host_ip 'host1.example.org' is not an IPv4 address", ("host1",),
                                      "u7s_host_ip", host_vars={"host1": {"u7s_host_ip": "host1.example.org"}}),
    "host-ip-not-the-hosts": mistake("u7s_host_ip 198.51.100.7 is not one of its addresses (192.0.2.12)", ("host2",),
                                     "u7s_host_ip", host_vars={"host2": {"u7s_host_ip": "198.51.100.7"}}),
    "host-ip-ipv6": mistake("u7s_host_ip 2001:db8::1 is IPv6", ("host1",), "u7s_host_ip",
                            host_vars={"host1": {"u7s_host_ip": "2001:db8::1"}}),
    "no-default-route": mistake("Host host2 has no default route", ("host2",), "u7s_host_ip",
                                edit=on_hosts("host2", default_ipv4=None)),
    # Extra ports.
    "extra-port-protocol": mistake("u7s_extra_ports[0] has protocol 'sctp'", ("host1",), "u7s_extra_ports",
                                   host_vars={"host1": {"u7s_extra_ports": [{"port": 30080, "protocol": "sctp"}]}}),
    "extra-port-zero": mistake("u7s_extra_ports[0] has port 0", ("host1",), "u7s_extra_ports",
                               host_vars={"host1": {"u7s_extra_ports": [{"port": 0}]}}),
    "extra-port-too-high": mistake("u7s_extra_ports[1] has port 70000", ("host1",), "u7s_extra_ports",
                                   host_vars={"host1": {"u7s_extra_ports": [{"port": 30080}, {"port": 70000}]}}),
    "extra-port-not-a-number": mistake("u7s_extra_ports[0] has port 'x'", ("host1",), "u7s_extra_ports",
                                       host_vars={"host1": {"u7s_extra_ports": [{"port": "x", "protocol": "tcp"}]}}),
    "extra-port-not-an-entry": mistake("u7s_extra_ports", ("host1",), "u7s_extra_ports",
                                       host_vars={"host1": {"u7s_extra_ports": [30080]}}),
    "extra-port-without-a-port": mistake("u7s_extra_ports[0] is {'protocol': 'tcp'}, not a {port, protocol} entry",
                                         ("host1",), "u7s_extra_ports",
                                         host_vars={"host1": {"u7s_extra_ports": [{"protocol": "tcp"}]}}),
    "extra-port-is-the-kubelets": mistake("the u7s_port_kubelet and u7s_extra_ports[0] (tcp) ports are both 10250/tcp",
                                          ("host1",), "u7s_extra_ports",
                                          host_vars={"host1": {"u7s_extra_ports": [{"port": 10250, "protocol": "tcp"}]}}),
    "two-hosts-one-address": mistake("Port 10250/tcp on address 192.0.2.11 is published twice", HOSTS,
                                     "u7s_port_kubelet",
                                     # Both behind one address (one machine, or NAT).
                                     edit=on_hosts("host2", default_ipv4=address_of(0), all_ipv4=[address_of(0)])),
    # Networks.
    "pod-cidr-not-a-network": mistake(("u7s_pod_cidr 'pods' is not", "network"), (), "u7s_pod_cidr",
                                      group_vars={"u7s_pod_cidr": "pods"}),
    "pod-cidr-host-bits": mistake(("10.244.0.1/16 has host bits set", "10.244.0.0/16?"), (), "u7s_pod_cidr",
                                  group_vars={"u7s_pod_cidr": "10.244.0.1/16"}),
    "pod-cidr-ipv6": mistake(("u7s_pod_cidr 'fd00:10:244::/56' is", "IPv4"), (), "u7s_pod_cidr",
                             group_vars={"u7s_pod_cidr": "fd00:10:244::/56"}),
    "pod-cidr-a-list": mistake(("u7s_pod_cidr", "10.244.0.0/16", "fd00:10:244::/56"), (), "u7s_pod_cidr",
                               group_vars={"u7s_pod_cidr": ["10.244.0.0/16", "fd00:10:244::/56"]}),
    "pod-cidr-dual-stack": mistake(("holds several networks", "IPv4"), (), "u7s_pod_cidr",
                                   group_vars={"u7s_pod_cidr": "10.244.0.0/16,fd00:10:244::/56"}),
    "pod-cidr-below-one-node": mistake("u7s_pod_cidr 10.244.0.0/25 is smaller than one node's pod range (/24)", (),
                                       "u7s_pod_cidr", group_vars={"u7s_pod_cidr": "10.244.0.0/25"}),
    "pod-cidr-too-small-for-the-hosts": mistake("holds pod ranges (/24) for 2 nodes, but the cluster has 3 hosts", (),
                                                "u7s_pod_cidr", names=THREE,
                                                group_vars={"u7s_pod_cidr": "10.244.0.0/23"}),
    "service-cidr-too-large": mistake("u7s_service_cidr 10.64.0.0/10 is larger than kube-apiserver allows", (),
                                      "u7s_service_cidr", group_vars={"u7s_service_cidr": "10.64.0.0/10"}),
    "service-cidr-too-small": mistake("u7s_service_cidr 10.96.0.0/29 is too small", (), "u7s_service_cidr",
                                      group_vars={"u7s_service_cidr": "10.96.0.0/29"}),
    "pod-and-service-overlap": mistake("u7s_pod_cidr 10.244.0.0/16 and u7s_service_cidr 10.244.128.0/20 overlap", (),
                                       "u7s_service_cidr", group_vars={"u7s_service_cidr": "10.244.128.0/20"}),
    "cidr-contains-a-host": mistake("u7s_service_cidr 192.0.2.0/24 contains the address of hosts host1, host2", HOSTS,
                                    "u7s_service_cidr", group_vars={"u7s_service_cidr": "192.0.2.0/24"}),
    "node-subnet-pool-not-a-network": mistake(("u7s_node_subnet_pool 'nodes' is not", "network"), (), "u7s_node_subnet_pool",
                                              group_vars={"u7s_node_subnet_pool": "nodes"}),
    "node-subnet-pool-host-bits": mistake(("10.100.0.1/16 has host bits set", "10.100.0.0/16?"), (),
                                          "u7s_node_subnet_pool", group_vars={"u7s_node_subnet_pool": "10.100.0.1/16"}),
    "node-subnet-pool-in-the-service-cidr": mistake(("u7s_node_subnet_pool 10.96.4.0/22", "u7s_service_cidr 10.96.0.0/16"),
                                                    (), "u7s_node_subnet_pool",
                                                    group_vars={"u7s_node_subnet_pool": "10.96.4.0/22"}),
    "node-subnet-prefix-out-of-range": mistake("u7s_node_subnet_prefix is 31; a node subnet must be a /16 to /29", (),
                                               "u7s_node_subnet_prefix", group_vars={"u7s_node_subnet_prefix": 31}),
    "node-subnet-prefix-above-the-pool": mistake("u7s_node_subnet_prefix /20 is larger than u7s_node_subnet_pool", (),
                                                 "u7s_node_subnet_prefix",
                                                 group_vars={"u7s_node_subnet_prefix": 20,
                                                             "u7s_node_subnet_pool": "10.100.0.0/24"}),
    "recorded-subnet-twice": mistake(("Host host3", "10.100.5.0/24", "host1"), ("host3",), "node.json", names=THREE,
                                     edit=on_hosts("host1", "host3", recorded_subnet="10.100.5.0/24")),
    "node-subnet-in-the-pod-cidr": mistake("u7s_node_subnet 10.244.3.0/24 overlaps the reserved range 10.244.0.0/16",
                                           ("host2",), "u7s_node_subnet",
                                           host_vars={"host2": {"u7s_node_subnet": "10.244.3.0/24"}}),
    # Names and versions.
    "user-root": mistake("u7s_user is root", ("host2",), "u7s_user", host_vars={"host2": {"u7s_user": "root"}}),
    "user-with-a-space": mistake("u7s_user 'Bad User' is not a valid user name", ("host1",), "u7s_user",
                                 host_vars={"host1": {"u7s_user": "Bad User"}}),
    "user-too-long": mistake("u7s_user '%s' is not a valid user name" % ("u" * 33), ("host1",), "u7s_user",
                             host_vars={"host1": {"u7s_user": "u" * 33}}),
    "version-without-v": mistake("u7s_kubernetes_version '1.36.4' is not a Kubernetes release", (),
                                 "u7s_kubernetes_version", group_vars={"u7s_kubernetes_version": "1.36.4"}),
    "version-without-patch": mistake("u7s_kubernetes_version 'v1.36' is not a Kubernetes release", (),
                                     "u7s_kubernetes_version", group_vars={"u7s_kubernetes_version": "v1.36"}),
    "dns-domain-upper-case": mistake("'Cluster_Local' is not a DNS domain", (), "u7s_dns_domain",
                                     group_vars={"u7s_dns_domain": "Cluster_Local"}),
    "dns-domain-empty-label": mistake("'a..b' is not a DNS domain", (), "u7s_dns_domain",
                                      group_vars={"u7s_dns_domain": "a..b"}),
    # The API endpoint.
    "endpoint-port-out-of-range": mistake("has port '70000'", (), "u7s_control_plane_endpoint",
                                          group_vars={"u7s_control_plane_endpoint": "api:70000"}),
    "endpoint-without-port": mistake("must be host:port", (), "u7s_control_plane_endpoint",
                                     group_vars={"u7s_control_plane_endpoint": "api.example.org"}),
    "endpoint-ipv6": mistake("names an IPv6 address", (), "u7s_control_plane_endpoint",
                             group_vars={"u7s_control_plane_endpoint": "[2001:db8::1]:6443"}),
    "publish-address-not-an-address": mistake("u7s_publish_address 'eth0' is not an IPv4 address", ("host2",),
                                              "u7s_publish_address", host_vars={"host2": {"u7s_publish_address": "eth0"}}),
    "publish-address-not-the-hosts": mistake("u7s_publish_address 192.0.2.99 is not one of its addresses", ("host2",),
                                             "u7s_publish_address",
                                             host_vars={"host2": {"u7s_publish_address": "192.0.2.99"}}),
    "apiserver-source-not-a-network": mistake("holds 'admins', which is neither an address nor a network", (),
                                              "u7s_firewall_apiserver_sources",
                                              group_vars={"u7s_firewall_apiserver_sources": ["admins"]}),
    "endpoint-bad-host": mistake("has host 'api_server!'", (), "u7s_control_plane_endpoint",
                                 group_vars={"u7s_control_plane_endpoint": "api_server!:6443"}),
    "port-out-of-range": mistake("u7s_port_vxlan is 70000", (), "u7s_port_vxlan",
                                 group_vars={"u7s_port_vxlan": 70000}),
}


def problem_of(kind: str) -> str:
    """The one problem of that kind of mistake."""
    problems = planned(**MISTAKES[kind].inventory)["problems"]
    found = [problem for problem in problems if all(marker in problem for marker in MISTAKES[kind].markers)]
    assert len(found) == 1, problems
    return found[0]


# --- every kind of mistake ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", MISTAKES)
def test_a_mistake_is_refused_naming_its_hosts_variable_and_fix(kind: str) -> None:
    message = problem_of(kind)
    assert MISTAKES[kind].variable in message
    for host in MISTAKES[kind].hosts:
        assert host in message
    assert " Fix: " in message


@pytest.mark.parametrize("kind", MISTAKES)
def test_every_problem_has_a_fix_that_leaves_working_nodes_alone(kind: str) -> None:
    result = planned(**MISTAKES[kind].inventory)
    assert result["problems"]
    assert result["hosts"] == {}
    for message in result["problems"]:
        assert " Fix: " in message, message
        assert "reset" not in message.lower(), message


def test_an_engine_not_yet_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_model, "ENGINES_NOT_YET", {"nerdctl": "its roles are missing"})
    problems = planned(host_vars={"host2": {"u7s_engine": "nerdctl"}})["problems"]
    assert problems == ["Host host2: u7s_engine=nerdctl is not supported yet (its roles are missing). "
                        "Fix: set u7s_engine to docker or podman."]


def test_nerdctl_is_accepted() -> None:
    result = planned(group_vars={"u7s_engine": "nerdctl"})
    assert result["problems"] == []
    assert set(result["hosts"]) == set(HOSTS)


def test_renamed_variables_name_the_setting_that_replaced_them() -> None:
    assert problem_of("renamed-everywhere") == (
        "Hosts host1, host2: node_host_ip is set, but the collection no longer reads it. Fix: rename it to u7s_host_ip "
        "(one name for the whole cluster; see `ansible-doc -t role u7s.cluster.settings`).")


def test_a_type_error_names_the_value_and_stops_the_checks() -> None:
    result = planned({"u7s_port_etcd": "abc", "u7s_dns_domain": "Not_A_Domain"})
    assert result["problems"] == [
        "Hosts host1, host2: u7s_port_etcd must be of type int, got a str (got 'abc'). "
        "Fix: correct u7s_port_etcd in the inventory."]


def test_extra_ports_given_as_a_string_are_told_to_be_a_list() -> None:
    """u7s_extra_ports is a list of {port, protocol}: the message must not ask for a dict instead."""
    message = problem_of("extra-ports-a-string")
    assert "list" in message, message
    assert "must be of type dict, got a str" not in message


def test_a_setting_that_differs_lists_each_value_with_its_hosts() -> None:
    message = problem_of("cluster-wide-setting-differs")
    assert message.startswith("u7s_pod_cidr must be the same on every host of u7s_cluster")
    # The values as the inventory has them (JSON), not Python's view of them.
    values = message.split(" but it is ")[1].split(". Fix:")[0]
    assert values.replace('"', "") == "10.244.0.0/16 on host host1; 10.32.0.0/16 on host host2"
    assert "Fix: set it once in group_vars/u7s_cluster.yml, not per host." in message


def test_per_host_settings_may_differ() -> None:
    per_host = {
        "u7s_user": "kube", "u7s_engine": "podman", "u7s_allow_cgroup_v1": True, "u7s_host_ip": "192.0.2.12",
        "u7s_node_subnet": "10.100.9.0/24", "u7s_node_name": "worker", "u7s_extra_ports": [{"port": 30080}],
        "u7s_publish_address": "0.0.0.0", "u7s_bypass4netns": "false",
    }
    assert set(per_host) == set(HOST_SETTINGS)
    result = planned(host_vars={"host2": per_host})
    assert result["problems"] == []
    node = result["hosts"]["host2"]
    assert (node["user"], node["engine"], node["allow_cgroup_v1"], node["node_name"]) == ("kube", "podman", True, "worker")
    assert (node["subnet"], node["subnet_source"]) == ("10.100.9.0/24", "override")


def test_the_node_subnet_pool_skips_the_clusters_networks() -> None:
    """The pod and service networks are reserved: no node subnet lies in them, even where the pool does."""
    result = planned({"u7s_node_subnet_pool": "10.96.0.0/12"})
    assert result["problems"] == []
    assert [node["subnet"] for node in result["hosts"].values()] == ["10.97.0.0/24", "10.97.1.0/24"]


# --- node names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("hostname", "node_name"), [
    ("host1", "u7s-host1"),
    ("Host_1.example", "u7s-host-1-example"),
    ("WORKER-02.lab.example.org", "u7s-worker-02-lab-example-org"),
    ("h" * 59, "u7s-" + "h" * 59),  # 63 characters: the longest DNS label
])
def test_node_name_from_the_inventory_hostname(hostname: str, node_name: str) -> None:
    assert default_node_name(hostname) == node_name
    result = planned(names=("host0", hostname))
    assert result["problems"] == []
    assert result["hosts"][hostname]["node_name"] == node_name


def test_an_existing_nodes_name_can_be_kept_by_u7s_node_name() -> None:
    result = planned(host_vars={"host2": {"u7s_node_name": "u7s-old-name"}})
    assert result["hosts"]["host2"]["node_name"] == "u7s-old-name"


# --- addresses ----------------------------------------------------------------------------------------

def test_host_ip_may_be_any_of_the_hosts_addresses() -> None:
    result = planned(host_vars={"host2": {"u7s_host_ip": "198.51.100.7"}},
                     edit=on_hosts("host2", all_ipv4=[address_of(1), "198.51.100.7"]))
    assert result["problems"] == []
    assert result["hosts"]["host2"]["host_address"] == "198.51.100.7"


def test_host_ip_is_taken_as_given_without_facts() -> None:
    result = planned(host_vars={"host1": {"u7s_host_ip": "198.51.100.1"}, "host2": {"u7s_host_ip": "198.51.100.2"}},
                     edit=on_hosts(*HOSTS, default_ipv4=None, all_ipv4=None))
    assert result["problems"] == []
    assert [node["host_address"] for node in result["hosts"].values()] == ["198.51.100.1", "198.51.100.2"]


def test_a_host_without_facts_or_host_ip_is_a_problem_not_a_crash() -> None:
    """The action passes None for hosts whose facts were not gathered (gather_facts: false, or no network subset)."""
    result = planned(edit=on_hosts("host2", default_ipv4=None, all_ipv4=None))
    (problem,) = result["problems"]
    assert "host2" in problem and "u7s_host_ip" in problem and " Fix: " in problem


# --- the plan -----------------------------------------------------------------------------------------

def test_a_valid_three_host_inventory_has_no_problems() -> None:
    result = planned(names=THREE)
    assert result["problems"] == []
    assert result["control_plane"] == "host1"
    assert list(result["hosts"]) == list(THREE)
    defaults = settings_defaults()
    assert result["settings"] == {name: value for name, value in defaults.items()
                                  if name not in HOST_SETTINGS and name not in CONTROLLER_SETTINGS}


def test_plan_of_each_node() -> None:
    result = planned(names=THREE, host_vars={"host3": {"u7s_extra_ports": [{"port": 30080}, {"port": 30053, "protocol": "udp"}]}})
    assert result["hosts"]["host1"] == {
        "user": "u7s", "engine": "docker", "allow_cgroup_v1": False, "node_name": "u7s-host1",
        # Docker: u7s_bypass4netns auto is off; the list is the cluster's, sorted and merged.
        "bypass4netns": False,
        "bypass4netns_ignore_subnets": ["0.0.0.0/32", "10.96.0.0/16", "10.100.0.0/16", "10.244.0.0/16", "127.0.0.0/8", "::/127"],
        "host_address": "192.0.2.11", "subnet": "10.100.0.0/24", "gateway": "10.100.0.1", "node_ip": "10.100.0.2",
        "subnet_source": "allocated",
        "running_version": None,
        # etcd stays in the node; the API server is on the control plane only.
        "publish_address": "192.0.2.11",
        "published_ports": [{"port": 6443, "protocol": "tcp"}, {"port": 10250, "protocol": "tcp"},
                            {"port": 8472, "protocol": "udp"}],
        "publish_specs": ["192.0.2.11:6443:6443/tcp", "192.0.2.11:10250:10250/tcp", "192.0.2.11:8472:8472/udp"],
        "port_names": {"6443/tcp": "u7s_port_apiserver", "10250/tcp": "u7s_port_kubelet", "8472/udp": "u7s_port_vxlan"},
        "filtered_ports": [{"port": 6443, "protocol": "tcp", "sources": "apiserver"},
                           {"port": 10250, "protocol": "tcp", "sources": "cluster"},
                           {"port": 8472, "protocol": "udp", "sources": "cluster"}],
    }
    assert [port["port"] for port in result["hosts"]["host2"]["published_ports"]] == [10250, 8472]
    assert result["host_addresses"] == ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    assert result["apiserver_sources"] == []
    host3 = result["hosts"]["host3"]
    assert (host3["subnet"], host3["gateway"], host3["node_ip"]) == ("10.100.2.0/24", "10.100.2.1", "10.100.2.2")
    assert host3["published_ports"][-2:] == [{"port": 30080, "protocol": "tcp"}, {"port": 30053, "protocol": "udp"}]
    assert host3["port_names"]["10250/tcp"] == "u7s_port_kubelet"
    assert host3["port_names"]["30080/tcp"].startswith("u7s_extra_ports")
    # The user's own ports are not the firewall's.
    assert [port["port"] for port in host3["filtered_ports"]] == [10250, 8472]


def test_ports_are_published_on_the_chosen_address() -> None:
    result = planned(host_vars={"host2": {"u7s_publish_address": "0.0.0.0"}})
    assert result["problems"] == []
    assert result["hosts"]["host1"]["publish_specs"][0] == "192.0.2.11:6443:6443/tcp"
    assert result["hosts"]["host2"]["publish_specs"] == ["0.0.0.0:10250:10250/tcp", "0.0.0.0:8472:8472/udp"]


def test_two_clusters_share_hosts_when_their_control_planes_differ() -> None:
    """Workers publish no API server, so two tenants' API servers may use one port on different hosts."""
    one_machine = on_hosts("host2", default_ipv4=address_of(0), all_ipv4=[address_of(0)])
    result = planned(host_vars={"host2": {"u7s_user": "other"}}, edit=one_machine)
    assert [text for text in result["problems"] if "u7s_port_apiserver" in text] == []
    assert any("10250/tcp" in text for text in result["problems"])


def test_apiserver_sources_are_networks() -> None:
    result = planned({"u7s_firewall_apiserver_sources": ["198.51.100.7", "203.0.113.0/24", "2001:db8::/32"]})
    assert result["apiserver_sources"] == ["198.51.100.7/32", "203.0.113.0/24", "2001:db8::/32"]


def test_ports_given_as_strings_are_planned_as_numbers() -> None:
    """Inventories (INI, extra vars) often carry ports as strings."""
    result = planned({"u7s_port_apiserver": "16443", "u7s_port_kubelet": "11250"})
    assert result["problems"] == []
    assert result["settings"]["u7s_port_apiserver"] == 16443
    assert {"port": 11250, "protocol": "tcp"} in result["hosts"]["host2"]["published_ports"]
    assert result["api_endpoint"] == "192.0.2.11:16443"


def test_api_endpoint_is_the_control_plane_hosts_address_and_port() -> None:
    assert planned()["api_endpoint"] == "192.0.2.11:6443"
    groups = cluster_groups(HOSTS, control_plane=["host2"])
    assert planned({"u7s_port_apiserver": 16443}, groups=groups)["api_endpoint"] == "192.0.2.12:16443"


def test_api_endpoint_follows_u7s_control_plane_endpoint() -> None:
    assert planned({"u7s_control_plane_endpoint": "api.example.org:443"})["api_endpoint"] == "api.example.org:443"


def test_a_recorded_subnet_is_kept() -> None:
    result = planned(names=THREE, edit=on_hosts("host2", recorded_subnet="10.100.7.0/24"))
    assert result["problems"] == []
    assert {name: (node["subnet"], node["subnet_source"]) for name, node in result["hosts"].items()} == {
        "host1": ("10.100.0.0/24", "allocated"),
        "host2": ("10.100.7.0/24", "recorded"),
        "host3": ("10.100.1.0/24", "allocated"),
    }
    assert result["hosts"]["host2"]["node_ip"] == "10.100.7.2"


def test_several_problems_are_reported_at_once() -> None:
    result = planned({"u7s_dns_domain": "x_y", "node_port_kubelet": 10250},
                     host_vars={"host2": {"u7s_user": "root", "u7s_node_name": "Bad_Name"}})
    assert len(result["problems"]) == 4, result["problems"]
    for marker in ("node_port_kubelet is set", "u7s_dns_domain", "Host host2: u7s_user is root",
                   "u7s_node_name Bad_Name"):
        assert any(marker in problem for problem in result["problems"]), marker


def test_a_message_about_many_hosts_counts_the_rest() -> None:
    names = ["node%d" % index for index in range(8)]
    result = planned(names=names, host_vars={name: {"u7s_node_name": "same"} for name in names})
    (problem,) = result["problems"]
    assert problem.startswith("Hosts node0, node1, node2, node3, node4 (and 3 more) would all be the Kubernetes node same")
    assert describe_hosts(["a"]) == "host a"
    assert describe_hosts(list("abcdef")) == "hosts a, b, c, d, e (and 1 more)"


def test_ten_thousand_hosts_plan_in_well_under_seconds() -> None:
    """A guard against quadratic checks, not a benchmark (bench/plan.py measures).

    The best of up to three tries under a bound far above the ~1 s it takes on an idle 2-core
    machine, so that a busy machine (a test bed building images beside it) does not fail it; a
    quadratic check takes minutes for 10,000 hosts, whatever the load.
    """
    names = ["node%d" % index for index in range(10000)]
    records = records_of(names, {"u7s_pod_cidr": "10.128.0.0/10", "u7s_node_subnet_pool": "172.16.0.0/12",
                                 "u7s_node_subnet_prefix": 26})
    best = float("inf")
    for _try in range(3):
        started = time.perf_counter()
        result = plan(records)
        best = min(best, time.perf_counter() - started)
        if best < 10:
            break
    assert best < 10
    assert result["problems"] == []
    assert len(result["hosts"]) == 10000


def test_running_nodes_keep_their_settings_and_older_state_files_pass() -> None:
    """The same values as recorded pass; a state file of an earlier release (no settings) is no change."""
    recorded = planned()["recorded_settings"]
    assert set(recorded) == set(RECORDED_SETTINGS)
    same = planned(edit=on_hosts("host1", "host2", recorded_settings=dict(recorded)))
    assert same["problems"] == []
    older = planned(edit=on_hosts("host1", "host2", recorded_settings=None))
    assert older["problems"] == []


def running(version: str, **settings: t.Any) -> Edit:
    """Both hosts run nodes recorded with the default settings, at VERSION (and SETTINGS)."""
    recorded = {**planned()["recorded_settings"], "u7s_kubernetes_version": version, **settings}
    return on_hosts("host1", "host2", recorded_settings=recorded)


def upgrade_plan(target: str, edit: Edit) -> dict[str, t.Any]:
    records = records_of(HOSTS, {"u7s_kubernetes_version": target})
    edit(records)
    return plan(records, purpose="upgrade")


def test_site_refuses_a_new_version_and_names_the_upgrade_playbook() -> None:
    result = planned({"u7s_kubernetes_version": "v1.36.4"}, edit=running("v1.35.8"))
    assert result["problems"] == [
        "u7s_kubernetes_version is v1.36.4, but the nodes on hosts host1, host2 run v1.35.8: site.yml does not change the "
        "Kubernetes version of running nodes. Fix: run playbooks/upgrade.yml to move them to v1.36.4 one node at a "
        "time, or set u7s_kubernetes_version back to v1.35.8."]


@pytest.mark.parametrize("running_version", ["v1.35.8", "v1.36.0", "v1.36.4"])
def test_upgrade_moves_one_minor_up_or_a_patch(running_version) -> None:
    result = upgrade_plan("v1.36.4", running(running_version))
    assert result["problems"] == []
    assert {node["running_version"] for node in result["hosts"].values()} == {running_version}


@pytest.mark.parametrize(("running_version", "marker"), [
    ("v1.36.5", "a downgrade is not supported"),
    ("v1.34.2", "one minor version at a time"),
    ("v0.36.4", "one minor version at a time"),
])
def test_upgrade_refuses_a_downgrade_or_a_skipped_minor(running_version, marker) -> None:
    (problem,) = upgrade_plan("v1.36.4", running(running_version))["problems"]
    assert marker in problem and "Fix:" in problem and "host1, host2" in problem


def test_upgrade_still_keeps_every_other_recorded_setting() -> None:
    (problem,) = upgrade_plan("v1.36.4", running("v1.35.8", u7s_pod_cidr="10.32.0.0/12"))["problems"]
    assert problem.startswith("u7s_pod_cidr is ") and "set u7s_pod_cidr back to" in problem


def test_a_half_upgraded_cluster_finishes_its_upgrade() -> None:
    """A run that stopped between nodes leaves two versions; the upgrade takes both to the target."""
    recorded = planned()["recorded_settings"]

    def mixed(records):
        records[0]["recorded_settings"] = {**recorded, "u7s_kubernetes_version": "v1.36.4"}
        records[1]["recorded_settings"] = {**recorded, "u7s_kubernetes_version": "v1.35.8"}

    result = upgrade_plan("v1.36.4", mixed)
    assert result["problems"] == []
    assert [node["running_version"] for node in result["hosts"].values()] == ["v1.36.4", "v1.35.8"]


class TaggedStr(str):
    """What Ansible's templating hands over: a subclass of str (a data tag)."""


def test_recorded_settings_compare_by_value_whatever_the_class() -> None:
    """The node's state file gives plain str; the inventory gives Ansible's tagged subclasses."""
    recorded = planned()["recorded_settings"]
    tagged = {"u7s_kubernetes_version": TaggedStr(recorded["u7s_kubernetes_version"]),
              "u7s_dns_domain": TaggedStr(recorded["u7s_dns_domain"])}
    result = planned(group_vars=tagged, edit=on_hosts("host1", "host2", recorded_settings=dict(recorded)))
    assert result["problems"] == []


# --- bypass4netns (u7s_bypass4netns, per host) -------------------------------------------------------------

def test_bypass4netns_is_on_by_default_with_nerdctl_only() -> None:
    """The default is auto: on for the nerdctl host (a recent kernel), off for the Docker ones."""
    result = planned(names=THREE, host_vars={"host1": {"u7s_engine": "nerdctl"}})
    assert result["problems"] == []
    assert {name: node["bypass4netns"] for name, node in result["hosts"].items()} == {
        "host1": True, "host2": False, "host3": False}


def test_bypass4netns_auto_is_on_only_for_nerdctl_on_a_recent_kernel() -> None:
    both = {"u7s_engine": "nerdctl", "u7s_bypass4netns": "auto"}
    result = planned(names=THREE, host_vars={"host1": both, "host2": both, "host3": {"u7s_bypass4netns": "auto"}},
                     edit=on_hosts("host2", kernel="5.4.0-216-generic"))
    assert result["problems"] == []
    assert {name: node["bypass4netns"] for name, node in result["hosts"].items()} == {
        "host1": True, "host2": False, "host3": False}


@pytest.mark.parametrize(("engine", "kernel", "says"), [
    ("docker", "6.12.48+deb13-amd64", "but its u7s_engine is docker"),
    ("podman", "6.12.48+deb13-amd64", "but its u7s_engine is podman"),
    ("nerdctl", "5.4.0-216-generic", "but the host runs Linux 5.4.0-216-generic"),
])
def test_bypass4netns_true_is_refused_before_any_change(engine, kernel, says) -> None:
    """The settings check (playbooks/hosts.yml's first play) fails with every problem, naming host, variable and fix."""
    result = planned(host_vars={"host2": {"u7s_engine": engine, "u7s_bypass4netns": True}},
                     edit=on_hosts("host2", kernel=kernel))
    (problem,) = result["problems"]
    assert problem.startswith("Host host2: u7s_bypass4netns is true, " + says)
    assert " Fix: " in problem and "host2" in problem.split(" Fix: ")[1]
    assert result["hosts"] == {}


@pytest.mark.parametrize("value", [True, "true", "True"])
def test_bypass4netns_true_may_be_written_as_yaml_or_text(value) -> None:
    result = planned({"u7s_engine": "nerdctl", "u7s_bypass4netns": value})
    assert result["problems"] == []
    assert all(node["bypass4netns"] for node in result["hosts"].values())


@pytest.mark.parametrize("value", ["yes", "on", 1, "enabled"])
def test_bypass4netns_of_another_value_is_refused(value) -> None:
    (problem,) = planned({"u7s_bypass4netns": value})["problems"]
    assert "u7s_bypass4netns" in problem and "Fix: correct u7s_bypass4netns" in problem


def test_bypass4netns_may_differ_between_hosts_and_false_turns_it_off() -> None:
    result = planned({"u7s_engine": "nerdctl", "u7s_bypass4netns": "auto"}, host_vars={"host2": {"u7s_bypass4netns": False}})
    assert result["problems"] == []
    assert [node["bypass4netns"] for node in result["hosts"].values()] == [True, False]


def test_bypass4netns_leaves_every_node_network_to_the_node() -> None:
    """The pool, and a node subnet set outside it, with the pod and service networks and loopback."""
    result = planned({"u7s_engine": "nerdctl", "u7s_bypass4netns": "auto"},
                     host_vars={"host2": {"u7s_node_subnet": "172.31.9.0/24"}})
    assert result["problems"] == []
    for node in result["hosts"].values():
        assert node["bypass4netns_ignore_subnets"] == [
            "0.0.0.0/32", "10.96.0.0/16", "10.100.0.0/16", "10.244.0.0/16", "127.0.0.0/8", "172.31.9.0/24", "::/127"]
