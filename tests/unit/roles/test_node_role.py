# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The node role's container, from its task files evaluated with the settings check's plan (it has no templates).

How the node's ports, image and cgroup driver agree with kubeadm's and flannel's: test_settings.py.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils import nerdctl

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import RECORDED_SETTINGS
from rendering import (
    CONTAINER_MODULES,
    inventory_vars_of_test_bed,
    kubeadm_init_config,
    node_container as container,
    node_variables,
    task_named,
    template,
)

CUSTOM_PORTS = {"u7s_port_etcd": 12379, "u7s_port_apiserver": 16443, "u7s_port_kubelet": 20250, "u7s_port_vxlan": 18472}
# A worker publishes its kubelet and VXLAN ports, on its own address.
CUSTOM_SPECS = ["192.0.2.12:20250:20250/tcp", "192.0.2.12:18472:18472/udp"]


def published_port_specs(inventory: dict | None = None, host: str = "host1", engine: str = "docker") -> list:
    return container({**(inventory or {}), "u7s_engine": engine}, host=host)[CONTAINER_MODULES[engine][1]]


# --- published ports ----------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["docker", "podman", "nerdctl"])
def test_default_published_ports(engine):
    """The API server on the control plane only, etcd nowhere, all on the host's address only."""
    assert published_port_specs(engine=engine) == [
        "192.0.2.11:6443:6443/tcp", "192.0.2.11:10250:10250/tcp", "192.0.2.11:8472:8472/udp"]
    assert published_port_specs(host="host2", engine=engine) == [
        "192.0.2.12:10250:10250/tcp", "192.0.2.12:8472:8472/udp"]


def test_ports_on_every_address_when_asked():
    assert published_port_specs({"u7s_publish_address": "0.0.0.0"}, host="host2") == [
        "0.0.0.0:10250:10250/tcp", "0.0.0.0:8472:8472/udp"]


@pytest.mark.parametrize("inventory", [CUSTOM_PORTS, {name: str(port) for name, port in CUSTOM_PORTS.items()}],
                         ids=["ints", "strings"])
def test_custom_published_ports(inventory):
    assert published_port_specs(inventory) == [
        "192.0.2.11:16443:16443/tcp", "192.0.2.11:20250:20250/tcp", "192.0.2.11:18472:18472/udp"]
    ports = node_variables(inventory)["settings_node"]["published_ports"]
    assert ports == [{"port": 16443, "protocol": "tcp"}, {"port": 20250, "protocol": "tcp"},
                     {"port": 18472, "protocol": "udp"}]
    assert all(isinstance(port["port"], int) for port in ports)


def test_extra_ports_are_published_under_the_same_number():
    extra = [{"port": 30080, "protocol": "tcp"}, {"port": "30053", "protocol": "udp"}, {"port": 30081}]
    assert published_port_specs({"u7s_extra_ports": extra})[-3:] == [
        "192.0.2.11:30080:30080/tcp", "192.0.2.11:30053:30053/udp", "192.0.2.11:30081:30081/tcp"]


def test_extra_ports_are_per_host():
    inventory = {"u7s_extra_ports": [{"port": 30080}]}
    assert published_port_specs(inventory, "host2")[-1] == "192.0.2.12:30080:30080/tcp"


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_the_container_runs_the_planned_node(engine):
    """Name, host name, address, ports and environment of the container, for either engine (its image: test_settings.py)."""
    _module, ports = CONTAINER_MODULES[engine]
    arguments = container({**CUSTOM_PORTS, "u7s_engine": engine}, host="host2")
    assert arguments[ports] == CUSTOM_SPECS
    assert arguments["name"] == "u7s-node"
    assert arguments["hostname"] == "u7s-host2"
    assert arguments["env"] == {"HOST_IP": "192.0.2.12", "U7S_CGROUP_DRIVER": "systemd",
                                "KUBECONFIG": "/etc/kubernetes/admin.conf"}
    address = arguments["networks"][0]["ipv4_address"] if engine == "docker" else arguments["ip"]
    assert address == "10.100.1.2"


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_the_node_network_is_the_planned_subnet(engine):
    variables = node_variables({"u7s_engine": engine}, "host2")
    if engine == "docker":
        network = template(task_named("node", "container-docker.yml", "Create the node network")[
            "community.docker.docker_network"], variables)["ipam_config"][0]
    else:
        network = template(task_named("node", "container-podman.yml", "Create the node network")[
            "containers.podman.podman_network"], variables)
    assert (network["subnet"], network["gateway"]) == ("10.100.1.0/24", "10.100.1.1")


@pytest.mark.parametrize("inventory", [{}, {"u7s_port_apiserver": 16443, "u7s_kubelet_config": {"maxPods": 50}}])
def test_the_node_state_records_the_planned_subnet_and_the_settings_it_runs_with(inventory):
    """What the next run's settings check reads back: the subnet to keep, the settings that may not change."""
    variables = node_variables(inventory)
    task = task_named("node", "main.yml", "Record the node's subnet and the settings it runs with")
    assert template(task["ansible.builtin.copy"]["dest"], variables) == "/home/u7s/.local/state/u7s/node.json"
    content = template(task["ansible.builtin.copy"]["content"], variables)
    assert content.endswith("\n")
    state = json.loads(content)
    assert {key: state[key] for key in ("subnet", "node_ip", "container")} == {
        "subnet": "10.100.0.0/24", "node_ip": "10.100.0.2", "container": "u7s-node"}
    assert state["settings"] == {setting: variables["settings_plan"]["settings"][setting]
                                 for setting in RECORDED_SETTINGS}
    assert state["settings"]["u7s_port_apiserver"] == inventory.get("u7s_port_apiserver", 6443)
    assert state["settings"]["u7s_kubelet_config"] == inventory.get("u7s_kubelet_config", {})


@pytest.mark.parametrize(("container_image", "recreate"), [("sha256:old", True), ("sha256:new", False)])
def test_podman_recreates_a_container_of_a_reloaded_image(container_image, recreate):
    """podman_container compares images by name: an image reloaded under the same tag recreates by ID."""
    variables = {**node_variables({"u7s_engine": "podman"}),
                 "node_podman_container": {"containers": [{"Image": container_image}]},
                 "node_podman_image": {"images": [{"Id": "sha256:new"}]}}
    task = task_named("node", "container-podman.yml", "Run the node container")
    assert template(task["containers.podman.podman_container"]["recreate"], variables) is recreate


# --- cgroup driver ----------------------------------------------------------------------------

@pytest.mark.parametrize("inventory", [{}, inventory_vars_of_test_bed()], ids=["defaults", "test-bed"])
def test_containerd_and_kubelet_use_the_same_cgroup_driver(inventory):
    node = container(inventory)["env"]["U7S_CGROUP_DRIVER"]
    kubelet = kubeadm_init_config(inventory)["KubeletConfiguration"]["cgroupDriver"]
    assert node == kubelet
    assert node == ("cgroupfs" if inventory else "systemd")


# --- nerdctl: the spec its task file gives the collection's nerdctl filters -----------------------------------

def nerdctl_spec(inventory: dict | None = None, host: str = "host1") -> dict:
    variables = node_variables({**(inventory or {}), "u7s_engine": "nerdctl"}, host)
    return template(task_named("node", "container-nerdctl.yml", "Run the node container")["vars"]["node_nerdctl_spec"],
                    variables)


def test_nerdctl_runs_the_planned_node():
    spec = nerdctl_spec(CUSTOM_PORTS, host="host2")
    assert spec["publish"] == CUSTOM_SPECS
    assert (spec["name"], spec["hostname"]) == ("u7s-node", "u7s-host2")
    assert (spec["ip"], spec["network"]) == ("10.100.1.2", "u7s-node")
    assert spec["env"] == {"HOST_IP": "192.0.2.12", "U7S_CGROUP_DRIVER": "systemd",
                           "KUBECONFIG": "/etc/kubernetes/admin.conf"}
    assert spec["restart"] == "always" and spec["privileged"] is True
    argv = nerdctl.run_argv(spec, "sha256:" + "a" * 64, "/usr/local/bin/nerdctl")
    assert argv[:3] == ["/usr/local/bin/nerdctl", "run", "--detach"] and argv[-1] == spec["image"]


def test_nerdctl_mounts_what_docker_mounts():
    """The same volumes, binds (read-only where Docker's are) and tmpfs as the Docker container."""
    docker = container({"u7s_engine": "docker"})
    expected = []
    for mount in docker["mounts"]:
        if mount["type"] in ("volume", "bind"):
            expected.append("%s:%s%s" % (mount["source"], mount["target"], ":ro" if mount.get("read_only") else ""))
    spec = nerdctl_spec()
    assert spec["volumes"] == expected
    assert spec["tmpfs"] == [m["target"] for m in docker["mounts"] if m["type"] == "tmpfs"]
    assert spec["sysctls"] == docker["sysctls"]
    assert spec["image"] == docker["image"] and spec["hostname"] == docker["hostname"]
    assert spec["publish"] == docker["published_ports"]


def test_nerdctl_creates_the_planned_network():
    variables = node_variables({"u7s_engine": "nerdctl"}, "host2")
    argv = template(task_named("node", "container-nerdctl.yml", "Create the node network")["ansible.builtin.command"][
        "argv"], variables)
    assert argv[1:] == ["network", "create", "--subnet", "10.100.1.0/24", "--gateway", "10.100.1.1", "u7s-node"]
