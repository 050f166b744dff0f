# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The node role's derived variables (it has no templates) and how they line up with the other roles."""

from __future__ import annotations

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader

from rendering import ROLES, evaluate, inventory_vars_of_test_bed, load_vars, role_variables, trusted, versions_env

CUSTOM_PORTS = {"u7s_port_etcd": 12379, "u7s_port_apiserver": 16443, "u7s_port_kubelet": 20250, "u7s_port_vxlan": 18472}


def node_variables(inventory: dict | None = None, hostname: str = "host1") -> dict:
    return role_variables("node", inventory=inventory, facts={"inventory_hostname": hostname})


# --- published ports ----------------------------------------------------------------------------

def test_default_published_ports():
    variables = node_variables()
    assert evaluate("node_published_port_specs", variables) == [
        "2379:2379/tcp", "6443:6443/tcp", "10250:10250/tcp", "8472:8472/udp"]


@pytest.mark.parametrize("inventory", [CUSTOM_PORTS, {name: str(port) for name, port in CUSTOM_PORTS.items()}],
                         ids=["ints", "strings"])
def test_custom_published_ports(inventory):
    variables = node_variables(inventory)
    assert evaluate("node_published_port_specs", variables) == [
        "12379:12379/tcp", "16443:16443/tcp", "20250:20250/tcp", "18472:18472/udp"]
    ports = evaluate("node_published_ports", variables)
    assert ports == [{"port": 12379, "protocol": "tcp"}, {"port": 16443, "protocol": "tcp"},
                     {"port": 20250, "protocol": "tcp"}, {"port": 18472, "protocol": "udp"}]
    assert all(isinstance(port["port"], int) for port in ports)


def test_published_ports_are_the_ones_kubeadm_and_flannel_use():
    """The node publishes each port under the same number the cluster advertises it by."""
    node = node_variables(CUSTOM_PORTS)
    kubeadm = role_variables("kubeadm", inventory=CUSTOM_PORTS)
    flannel = role_variables("flannel", inventory=CUSTOM_PORTS)
    assert [spec["port"] for spec in evaluate("node_published_ports", node)] == [
        int(evaluate("kubeadm_port_etcd", kubeadm)),
        int(evaluate("kubeadm_port_apiserver", kubeadm)),
        int(evaluate("kubeadm_port_kubelet", kubeadm)),
        int(evaluate("flannel_vxlan_port", flannel)),
    ]


# --- node name -------------------------------------------------------------------------------

def name_accepted(variables: dict) -> bool:
    """The node preflight's own check of node_name."""
    tasks = DataLoader().load_from_file(str(ROLES / "node/tasks/preflight.yml"))
    (task,) = [task for task in tasks if task["name"] == "Refuse a node name Kubernetes would reject"]
    return all(evaluate(condition, variables) for condition in trusted(task["ansible.builtin.assert"]["that"]))


@pytest.mark.parametrize(("hostname", "node_name"), [
    ("host1", "u7s-host1"),
    ("Host_1.example", "u7s-host-1-example"),
    ("WORKER-02.lab.example.org", "u7s-worker-02-lab-example-org"),
])
def test_node_name_default(hostname, node_name):
    variables = node_variables(hostname=hostname)
    assert evaluate("node_name", variables) == node_name
    assert name_accepted(variables)


@pytest.mark.parametrize(("hostname", "node_name"), [
    ("h" * 60, "u7s-" + "h" * 60),  # 64 characters: one too many
    ("edge_", "u7s-edge-"),  # a label cannot end with '-'
])
def test_a_hostname_that_makes_no_dns_label_is_refused(hostname, node_name):
    """The preflight check says so before anything changes (set node_name then)."""
    variables = node_variables(hostname=hostname)
    assert evaluate("node_name", variables) == node_name
    assert not name_accepted(variables)


# --- pins and agreement with the other roles --------------------------------------------------

def test_node_image_default_is_the_bundles_kubernetes():
    defaults = yaml.safe_load((ROLES / "node/defaults/main.yml").read_text())
    assert defaults["node_image"] == "localhost/u7s/node:" + versions_env()["K8S_VERSION"]


def test_node_image_default_is_what_the_node_image_role_builds():
    node_image = role_variables("node_image")
    built = evaluate("node_image_name ~ ':' ~ node_image_tag", node_image)
    assert evaluate("node_image", node_variables()) == built


@pytest.mark.parametrize("inventory", [{}, inventory_vars_of_test_bed()], ids=["defaults", "test-bed"])
def test_containerd_and_kubelet_use_the_same_cgroup_driver(inventory):
    node = evaluate("node_cgroup_driver", node_variables(inventory))
    kubelet = evaluate("kubeadm_cgroup_driver", role_variables("kubeadm", inventory=inventory))
    assert node == kubelet
    assert node == ("cgroupfs" if inventory else "systemd")


def test_reserved_cidrs_are_the_clusters_networks():
    inventory = {"u7s_pod_cidr": "10.32.0.0/16", "u7s_service_cidr": "10.33.0.0/16"}
    kubeadm = role_variables("kubeadm", inventory=inventory)
    assert evaluate("node_reserved_cidrs", node_variables(inventory)) == [
        evaluate("kubeadm_pod_cidr", kubeadm), evaluate("kubeadm_service_cidr", kubeadm)]


def test_argument_spec_defaults_are_the_defaults():
    specs = yaml.safe_load((ROLES / "node/meta/argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    variables = node_variables()
    for name, spec in options.items():
        if "default" in spec:
            assert evaluate(name, variables) == spec["default"], name
    assert set(options) == set(load_vars(ROLES / "node/defaults/main.yml"))


def test_extra_ports_are_published_under_the_same_number():
    variables = node_variables({"node_extra_ports": [{"port": 30080, "protocol": "tcp"}]})
    assert evaluate("node_published_port_specs", variables)[-1] == "30080:30080/tcp"
    assert evaluate("node_published_ports", variables)[-1] == {"port": 30080, "protocol": "tcp"}
