# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The flannel manifest, rendered from the real template and read back as YAML (and its JSON files as JSON)."""

from __future__ import annotations

import pytest
import yaml

from rendering import (
    ROLES,
    flannel_config_file as config_file,
    flannel_manifest as manifest,
    inventory_vars_of_test_bed,
    load_vars,
    render_role_template,
    role_variables,
    versions_env,
)

NAMESPACED_KINDS = {"ServiceAccount", "ConfigMap", "DaemonSet"}


def pod_spec(inventory: dict | None = None) -> dict:
    return manifest(inventory)["DaemonSet"]["spec"]["template"]["spec"]


def containers(inventory: dict | None = None) -> dict:
    spec = pod_spec(inventory)
    every = spec["initContainers"] + spec["containers"]
    assert len({container["name"] for container in every}) == len(every)
    return {container["name"]: container for container in every}


def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' Toleration.ToleratesTaint (k8s.io/api/core/v1/toleration.go)."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("key") and toleration["key"] != taint["key"]:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and toleration.get("value", "") == taint.get("value", "")


# --- objects ---------------------------------------------------------------------------------

def test_manifest_objects():
    objects = manifest()
    assert set(objects) == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"}
    for kind in NAMESPACED_KINDS:
        assert objects[kind]["metadata"]["namespace"] == "kube-flannel", kind
    assert objects["Namespace"]["metadata"]["name"] == "kube-flannel"


def test_manifest_is_marked_managed():
    text = render_role_template("flannel", "kube-flannel.yaml.j2", role_variables("flannel"))
    assert text.startswith("# Managed by Ansible\n")


def test_namespace_admits_privileged_pods():
    labels = manifest()["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_another_namespace_moves_every_namespaced_object():
    objects = manifest({"flannel_namespace": "u7s-net"})
    assert objects["Namespace"]["metadata"]["name"] == "u7s-net"
    for kind in NAMESPACED_KINDS:
        assert objects[kind]["metadata"]["namespace"] == "u7s-net", kind
    assert objects["ClusterRoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "flannel", "namespace": "u7s-net"}]


def test_service_account_and_rbac_fit_together():
    objects = manifest()
    account = objects["ServiceAccount"]["metadata"]["name"]
    assert pod_spec()["serviceAccountName"] == account
    binding = objects["ClusterRoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": objects["ClusterRole"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "kube-flannel"}]
    rules = {(resource, verb) for rule in objects["ClusterRole"]["rules"]
             for resource in rule["resources"] for verb in rule["verbs"]}
    # --kube-subnet-mgr watches nodes and patches their status; flanneld reads its own pod.
    assert {("nodes", "list"), ("nodes", "watch"), ("nodes/status", "patch"), ("pods", "get")} <= rules


# --- net-conf.json and cni-conf.json -----------------------------------------------------------

@pytest.mark.parametrize(("inventory", "port"), [({}, 8472), ({"u7s_port_vxlan": 18472}, 18472),
                                                 ({"u7s_port_vxlan": "18472"}, 18472)],
                         ids=["default", "custom", "custom-string"])
def test_net_conf_is_vxlan_on_the_published_port(inventory, port):
    net_conf = config_file("net-conf.json", inventory)
    assert net_conf["Network"] == "10.244.0.0/16"
    backend = net_conf["Backend"]
    assert backend["Type"] == "vxlan"
    # flannel reads Port and VNI as JSON numbers; "8472" would be refused.
    assert isinstance(backend["Port"], int) and backend["Port"] == port
    assert isinstance(backend["VNI"], int) and backend["VNI"] == 1


def test_net_conf_follows_the_pod_cidr_and_vni():
    """The pod network is the setting u7s_pod_cidr (test_settings.py: kubeadm's podSubnet is the same)."""
    net_conf = config_file("net-conf.json", {"u7s_pod_cidr": "10.32.0.0/16", "flannel_vxlan_vni": "4"})
    assert net_conf["Network"] == "10.32.0.0/16"
    assert net_conf["Backend"]["VNI"] == 4 and isinstance(net_conf["Backend"]["VNI"], int)


def test_cni_conf_chains_flannel_and_portmap():
    cni_conf = config_file("cni-conf.json")
    assert isinstance(cni_conf["name"], str) and isinstance(cni_conf["cniVersion"], str)
    plugins = cni_conf["plugins"]
    assert [plugin["type"] for plugin in plugins] == ["flannel", "portmap"]
    assert plugins[1]["capabilities"] == {"portMappings": True}
    assert plugins[0]["delegate"]["isDefaultGateway"] is True


def test_pods_read_the_config_map_they_are_given():
    objects = manifest()
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    assert volumes["flannel-cfg"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    install = containers()["install-cni"]
    assert install["args"][-2:] == ["/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/10-flannel.conflist"]
    for name in ("install-cni", "kube-flannel"):
        assert {"name": "flannel-cfg", "mountPath": "/etc/kube-flannel/"} in containers()[name]["volumeMounts"]
    for name, container in containers().items():
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, (name, mount)


# --- DaemonSet scheduling --------------------------------------------------------------------

def test_daemon_set_tolerates_no_schedule_but_not_no_execute():
    tolerations = pod_spec()["tolerations"]
    assert tolerations
    for toleration in tolerations:
        assert toleration.get("effect") == "NoSchedule", toleration


def test_flannel_waits_for_the_nodes_external_ip():
    """The kubeadm role's NoExecute pending taint keeps flannel away until the public IP is set."""
    pending = load_vars(ROLES / "settings/vars/main.yml")["u7s_registration_taint"]
    assert pending["effect"] == "NoExecute"
    tolerations = pod_spec()["tolerations"]
    assert not any(tolerates(toleration, dict(pending)) for toleration in tolerations)
    # Everything a new node carries before its CNI is up, the pending taint aside.
    for taint in ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                  {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
                  {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}):
        assert any(tolerates(toleration, taint) for toleration in tolerations), taint


def test_daemon_set_runs_on_the_host_network():
    spec = pod_spec()
    assert spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"


# --- no pod reads the node's root filesystem ---------------------------------------------------

def test_no_container_mounts_the_nodes_root():
    """UDP checksum offload is the node's own service (node_image), so no pod can read the CA key or admin.conf."""
    paths = {volume["name"]: volume.get("hostPath", {}).get("path") for volume in pod_spec()["volumes"]}
    assert "/" not in paths.values()
    assert not any(path and path.startswith(("/etc/kubernetes", "/var/lib/etcd")) for path in paths.values())
    for name, container in containers().items():
        assert "SYS_CHROOT" not in (container.get("securityContext") or {}).get("capabilities", {}).get("add", []), name


# --- images and pins -------------------------------------------------------------------------

def images(inventory: dict | None = None) -> dict:
    return {name: container["image"] for name, container in containers(inventory).items()}


def test_images_are_the_variables():
    variables = role_variables("flannel")
    flannel, cni_plugin = variables["flannel_image"], variables["flannel_cni_plugin_image"]
    assert images() == {"install-cni-plugin": cni_plugin, "install-cni": flannel,
                        "kube-flannel": flannel}


def test_test_bed_uses_the_offline_cni_plugin_image():
    test_bed = inventory_vars_of_test_bed()
    found = images(test_bed)
    assert found["install-cni-plugin"] == test_bed["flannel_cni_plugin_image"]
    assert found["install-cni-plugin"] == "localhost/u7s/flannel-cni-plugin:" + versions_env()["FLANNEL_CNI_VERSION"]
    assert found["kube-flannel"] == "ghcr.io/flannel-io/flannel:" + versions_env()["FLANNEL_VERSION"]


def test_flannel_image_is_the_bundles_version():
    defaults = yaml.safe_load((ROLES / "flannel/defaults/main.yml").read_text())
    assert defaults["flannel_image"] == "ghcr.io/flannel-io/flannel:" + versions_env()["FLANNEL_VERSION"]
