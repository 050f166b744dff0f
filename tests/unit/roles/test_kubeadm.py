# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The kubeadm role's configuration files, rendered from the real templates and read back as YAML."""

from __future__ import annotations

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader

from rendering import ROLES, evaluate, inventory_vars_of_test_bed, render_documents, render_role_template, role_variables, trusted, versions_env

HOST1 = {
    "name": "u7s-host1", "host_address": "192.0.2.11", "internal_ip": "10.100.0.2", "container": "u7s-node",
    "engine": "docker", "user": "u7s", "uid": 1001, "config_dir": "/home/u7s/.config/u7s/node",
}
HOST2 = {
    "name": "u7s-host2", "host_address": "192.0.2.12", "internal_ip": "10.100.1.2", "container": "u7s-node",
    "engine": "docker", "user": "u7s", "uid": 1001, "config_dir": "/home/u7s/.config/u7s/node",
}
# What the join_token module returns (module results are data, not templates).
JOIN = {
    "api_server_endpoint": "192.0.2.11:6443",
    "token": "abcdef.0123456789abcdef",
    "ca_cert_hashes": ["sha256:" + "7f" * 32],
}
PENDING_TAINT = {"key": "u7s.cluster/external-ip-pending", "effect": "NoExecute"}
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def kubeadm_variables(inventory: dict | None = None, host: str = "host1", **facts) -> dict:
    """What the role sees on HOST: the node role's node_facts fact for every host, two-host inventory."""
    nodes = {"host1": HOST1, "host2": HOST2}
    return role_variables("kubeadm", inventory=inventory, facts={
        "groups": {"all": ["host1", "host2"], "control_plane": ["host1"], "workers": ["host2"],
                   "u7s_cluster": ["host1", "host2"]},
        "hostvars": {name: {"node_facts": node} for name, node in nodes.items()},
        "inventory_hostname": host,
        "node_facts": nodes[host],
        **facts,
    })


def by_kind(documents: list) -> dict:
    kinds = [document["kind"] for document in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {document["kind"]: document for document in documents}


def init_config(inventory: dict | None = None) -> dict:
    documents = render_documents("kubeadm", "kubeadm-init.yaml.j2", kubeadm_variables(inventory))
    return by_kind(documents)


def join_config(inventory: dict | None = None, join: dict | None = None) -> dict:
    documents = render_documents("kubeadm", "kubeadm-join.yaml.j2",
                                 kubeadm_variables(inventory, host="host2", kubeadm_join=join or JOIN))
    assert len(documents) == 1
    return documents[0]


def extra_args(args: list) -> dict:
    """kubeadm v1beta4 extraArgs (a list of name/value pairs) as a mapping; a name given twice is an error."""
    names = [arg["name"] for arg in args]
    assert len(names) == len(set(names)), names
    assert all(set(arg) == {"name", "value"} for arg in args), args
    return {arg["name"]: arg["value"] for arg in args}


# --- kubeadm-init.yaml: product defaults (cgroup v2 hosts) ----------------------------------

def test_init_has_the_four_kubeadm_documents():
    config = init_config()
    assert {kind: document["apiVersion"] for kind, document in config.items()} == {
        "InitConfiguration": "kubeadm.k8s.io/v1beta4",
        "ClusterConfiguration": "kubeadm.k8s.io/v1beta4",
        "KubeletConfiguration": "kubelet.config.k8s.io/v1beta1",
        "KubeProxyConfiguration": "kubeproxy.config.k8s.io/v1alpha1",
    }


def test_init_is_marked_managed():
    text = render_role_template("kubeadm", "kubeadm-init.yaml.j2", kubeadm_variables())
    assert text.startswith("# Managed by Ansible\n")


def test_kubelet_defaults_are_for_rootless_cgroup_v2_hosts():
    kubelet = init_config()["KubeletConfiguration"]
    assert kubelet == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "port": 10250,
        "failSwapOn": False,
        "featureGates": {"KubeletInUserNamespace": True},
    }
    # cgroup v1 is refused by default from Kubernetes 1.35 on; the product does not loosen that.
    assert "failCgroupV1" not in kubelet


def test_init_registration_defaults():
    init = init_config()["InitConfiguration"]
    registration = init["nodeRegistration"]
    assert registration["name"] == "u7s-host1"
    assert registration["taints"] == [CONTROL_PLANE_TAINT, PENDING_TAINT]
    assert "ignorePreflightErrors" not in registration


def test_local_api_endpoint_is_the_node_containers_own_address():
    """etcd binds localAPIEndpoint.advertiseAddress inside the node, where the host address does not exist."""
    endpoint = init_config()["InitConfiguration"]["localAPIEndpoint"]
    assert endpoint == {"advertiseAddress": "10.100.0.2", "bindPort": 6443}
    assert endpoint["advertiseAddress"] != HOST1["host_address"]


def test_cluster_configuration_defaults():
    cluster = init_config()["ClusterConfiguration"]
    assert cluster["kubernetesVersion"] == versions_env()["K8S_VERSION"]
    assert cluster["controlPlaneEndpoint"] == "192.0.2.11:6443"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/16",
                                     "dnsDomain": "cluster.local"}


def test_api_server_advertises_the_host_and_reaches_kubelets_by_external_ip():
    api_server = init_config()["ClusterConfiguration"]["apiServer"]
    assert extra_args(api_server["extraArgs"]) == {
        "advertise-address": "192.0.2.11",
        "etcd-servers": "https://127.0.0.1:2379",
        "kubelet-preferred-address-types": "ExternalIP",
    }
    assert api_server["certSANs"] == ["localhost", "127.0.0.1", "u7s-host1", "192.0.2.11"]


def test_controller_manager_leaves_node_addresses_to_the_collection():
    cluster = init_config()["ClusterConfiguration"]
    assert extra_args(cluster["controllerManager"]["extraArgs"]) == {"cloud-provider": "external"}


def test_etcd_listens_on_loopback_and_the_internal_ip():
    etcd = extra_args(init_config()["ClusterConfiguration"]["etcd"]["local"]["extraArgs"])
    assert etcd["listen-client-urls"].split(",") == ["https://127.0.0.1:2379", "https://10.100.0.2:2379"]
    assert etcd["advertise-client-urls"] == "https://10.100.0.2:2379"
    assert HOST1["host_address"] not in str(etcd)


def test_kube_proxy_leaves_conntrack_sysctls_alone():
    proxy = init_config()["KubeProxyConfiguration"]
    assert proxy["mode"] == "iptables"
    assert proxy["conntrack"] == {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"}


# --- kubeadm-init.yaml: the test bed (cgroup v1 machine) ---------------------------------------

def test_test_bed_kubelet_runs_on_cgroup_v1():
    kubelet = init_config(inventory_vars_of_test_bed())["KubeletConfiguration"]
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["failCgroupV1"] is False
    # kubeadm_kubelet_config is merged over the collection's settings, not in their place.
    assert kubelet["featureGates"] == {"KubeletInUserNamespace": True}
    assert kubelet["failSwapOn"] is False
    assert kubelet["port"] == 10250


def test_test_bed_skips_system_verification():
    registration = init_config(inventory_vars_of_test_bed())["InitConfiguration"]["nodeRegistration"]
    assert registration["ignorePreflightErrors"] == ["SystemVerification"]
    assert registration["taints"] == [CONTROL_PLANE_TAINT, PENDING_TAINT]


def test_kubelet_config_merges_recursively():
    kubelet = init_config({"kubeadm_kubelet_config": {"featureGates": {"NodeSwap": True}, "maxPods": 50}})[
        "KubeletConfiguration"]
    assert kubelet["featureGates"] == {"KubeletInUserNamespace": True, "NodeSwap": True}
    assert kubelet["maxPods"] == 50
    assert kubelet["cgroupDriver"] == "systemd"


@pytest.mark.parametrize("inventory", [{"u7s_cgroup_driver": "cgroupfs"}, {"kubeadm_cgroup_driver": "cgroupfs"}],
                         ids=["cluster-wide", "role-variable"])
def test_cgroup_driver_from_the_inventory(inventory):
    assert init_config(inventory)["KubeletConfiguration"]["cgroupDriver"] == "cgroupfs"


# --- kubeadm-init.yaml: another user's ports, an endpoint of its own ------------------------

CUSTOM_PORTS = {"u7s_port_apiserver": 16443, "u7s_port_etcd": 12379, "u7s_port_kubelet": 20250}


def test_custom_ports_flow_everywhere():
    config = init_config(CUSTOM_PORTS)
    cluster = config["ClusterConfiguration"]
    assert config["InitConfiguration"]["localAPIEndpoint"] == {"advertiseAddress": "10.100.0.2", "bindPort": 16443}
    assert cluster["controlPlaneEndpoint"] == "192.0.2.11:16443"
    assert extra_args(cluster["apiServer"]["extraArgs"])["etcd-servers"] == "https://127.0.0.1:12379"
    etcd = extra_args(cluster["etcd"]["local"]["extraArgs"])
    assert etcd["listen-client-urls"].split(",") == ["https://127.0.0.1:12379", "https://10.100.0.2:12379"]
    assert etcd["advertise-client-urls"] == "https://10.100.0.2:12379"
    kubelet = config["KubeletConfiguration"]
    assert kubelet["port"] == 20250 and isinstance(kubelet["port"], int)


def test_ports_given_as_strings_render_the_same():
    """Inventories (INI, extra vars) often carry ports as strings."""
    as_strings = {name: str(port) for name, port in CUSTOM_PORTS.items()}
    assert init_config(as_strings) == init_config(CUSTOM_PORTS)


def test_custom_cidrs():
    cluster = init_config({"u7s_pod_cidr": "10.32.0.0/16", "u7s_service_cidr": "10.33.0.0/16"})["ClusterConfiguration"]
    assert cluster["networking"]["podSubnet"] == "10.32.0.0/16"
    assert cluster["networking"]["serviceSubnet"] == "10.33.0.0/16"


@pytest.mark.parametrize(("endpoint", "san"), [
    ("cp.example.org:16443", "cp.example.org"),
    ("198.51.100.7:6443", "198.51.100.7"),
])
def test_control_plane_endpoint_override_is_a_san(endpoint, san):
    cluster = init_config({**CUSTOM_PORTS, "kubeadm_control_plane_endpoint": endpoint})["ClusterConfiguration"]
    assert cluster["controlPlaneEndpoint"] == endpoint
    assert cluster["apiServer"]["certSANs"] == ["localhost", "127.0.0.1", "u7s-host1", "192.0.2.11", san]


# --- kubeadm-join.yaml ---------------------------------------------------------------------

def test_join_discovers_the_cluster_by_token_and_ca_pin():
    join = join_config()
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert join["kind"] == "JoinConfiguration"
    assert join["discovery"] == {"bootstrapToken": {
        "apiServerEndpoint": "192.0.2.11:6443",
        "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:" + "7f" * 32],
    }}


def test_join_registers_the_worker_with_the_pending_taint_only():
    registration = join_config()["nodeRegistration"]
    assert registration["name"] == "u7s-host2"
    assert registration["taints"] == [PENDING_TAINT]
    assert "ignorePreflightErrors" not in registration


def test_join_takes_every_ca_pin():
    hashes = ["sha256:" + "01" * 32, "sha256:" + "ab" * 32]
    join = join_config(join={**JOIN, "ca_cert_hashes": hashes})
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == hashes


def test_test_bed_join_skips_system_verification():
    registration = join_config(inventory_vars_of_test_bed())["nodeRegistration"]
    assert registration["ignorePreflightErrors"] == ["SystemVerification"]
    assert registration["taints"] == [PENDING_TAINT]


def test_pending_taint_is_cleared_by_the_addresses_step():
    variables = kubeadm_variables()
    assert evaluate("kubeadm_addresses_pending_taint", variables) == PENDING_TAINT
    assert PENDING_TAINT["key"] in evaluate("kubeadm_taints_cleared_by_addresses", variables)


# --- kubectl.sh ------------------------------------------------------------------------------

def test_kubectl_wrapper_for_docker_and_podman():
    docker = render_role_template("kubeadm", "kubectl.sh.j2", kubeadm_variables())
    assert "export DOCKER_HOST=unix:///run/user/1001/docker.sock\n" in docker
    assert docker.rstrip().endswith("exec docker exec -i $tty u7s-node kubectl \"$@\"")
    podman = render_role_template("kubeadm", "kubectl.sh.j2",
                                  kubeadm_variables(node_facts={**HOST1, "engine": "podman", "container": "n1"}))
    assert "DOCKER_HOST" not in podman
    assert "export XDG_RUNTIME_DIR=/run/user/1001\n" in podman
    assert "XDG_RUNTIME_DIR" not in docker
    assert podman.rstrip().endswith("exec podman exec -i $tty n1 kubectl \"$@\"")


# --- settings checks and pins ----------------------------------------------------------------

def preflight_conditions(task_name: str) -> list:
    tasks = DataLoader().load_from_file(str(ROLES / "kubeadm/tasks/preflight.yml"))
    (task,) = [task for task in tasks if task["name"] == task_name]
    return trusted(task["ansible.builtin.assert"]["that"])


def settings_refused_by(inventory: dict) -> list:
    """The conditions of the role's settings check that INVENTORY fails."""
    variables = kubeadm_variables(inventory)
    return [condition for condition in preflight_conditions("Refuse settings kubeadm would reject")
            if not evaluate(condition, variables)]


@pytest.mark.parametrize("inventory", [{}, inventory_vars_of_test_bed(), {"kubeadm_control_plane_endpoint": "cp.example.org:16443"}],
                         ids=["defaults", "test-bed", "endpoint"])
def test_preflight_accepts_the_shipped_settings(inventory):
    assert settings_refused_by(inventory) == []


@pytest.mark.parametrize(("inventory", "variable"), [
    ({"u7s_cgroup_driver": "cgroup"}, "kubeadm_cgroup_driver"),
    ({"kubeadm_kubelet_config": ["failCgroupV1"]}, "kubeadm_kubelet_config"),
    ({"kubeadm_kubernetes_version": "1.36.4"}, "kubeadm_kubernetes_version"),
    ({"kubeadm_control_plane_endpoint": "https://cp.example.org:6443"}, "kubeadm_control_plane_endpoint"),
    ({"kubeadm_control_plane_endpoint": "cp.example.org"}, "kubeadm_control_plane_endpoint"),
])
def test_preflight_refuses_what_kubeadm_would(inventory, variable):
    (refused,) = settings_refused_by(inventory)
    assert variable in refused


def test_kubeadm_runs_the_bundles_kubernetes():
    defaults = yaml.safe_load((ROLES / "kubeadm/defaults/main.yml").read_text())
    assert defaults["kubeadm_kubernetes_version"] == versions_env()["K8S_VERSION"]
