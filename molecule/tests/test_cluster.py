"""End to end: the cluster site.yml brought up, checked from every host (and the controller's kubeconfig).

Upstream's smoke test, adapted: a 3-replica StatefulSet behind a headless Service spread over both
nodes, a client pod on each node that resolves and fetches every replica (so pod-to-pod traffic
crosses hosts over VXLAN), and a NodePort Service fetched from the other host.
"""

from __future__ import annotations

import base64
import datetime
import json

import pytest

from cluster_helpers import NAMESPACE, run_pod, wait_for

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")

APP = "dnstest"
NODE_PORT = 30080
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


@pytest.fixture
def node_name(hostvars) -> str:
    return f"u7s-{hostvars['inventory_hostname']}"


# Module scope: it is removed before the lifecycle checks reset the cluster (a new CA; the
# session's client could not reach the rebuilt API server to remove it afterwards).
@pytest.fixture(scope="module")
def workload(core, api, busybox_image):
    """The smoke-test workload, on both nodes (the control-plane taint lifted for the test)."""
    apps = client.AppsV1Api(api)
    tainted = []
    for node in core.list_node().items:
        taints = node.spec.taints or []
        if any(t.key == CONTROL_PLANE_TAINT for t in taints):
            tainted.append(node.metadata.name)
            core.patch_node(node.metadata.name, {"spec": {"taints": [
                t.to_dict() for t in taints if t.key != CONTROL_PLANE_TAINT]}})
    labels = {"run": APP}
    core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": APP, "labels": labels},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "http", "port": 80}]},
    })
    core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": f"{APP}-nodeport", "labels": labels},
        "spec": {"type": "NodePort", "selector": labels,
                 "ports": [{"port": 80, "targetPort": 80, "nodePort": NODE_PORT}]},
    })
    apps.create_namespaced_stateful_set(NAMESPACE, {
        "metadata": {"name": APP},
        "spec": {
            "serviceName": APP, "replicas": 3, "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                   "whenUnsatisfiable": "DoNotSchedule",
                                                   "labelSelector": {"matchLabels": labels}}],
                    "containers": [{
                        "name": "web", "image": busybox_image, "imagePullPolicy": "Never",
                        "command": ["sh", "-c",
                                    'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html '
                                    "&& exec httpd -f -p 80 -h /www"],
                        "ports": [{"containerPort": 80}],
                        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2},
                    }],
                },
            },
        },
    })
    try:
        wait_for("3 ready dnstest replicas", lambda: (
            apps.read_namespaced_stateful_set(APP, NAMESPACE).status.ready_replicas or 0) == 3)
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"run={APP}").items
        yield {pod.metadata.name: pod.spec.node_name for pod in pods}
    finally:
        apps.delete_namespaced_stateful_set(APP, NAMESPACE)
        core.delete_namespaced_service(APP, NAMESPACE)
        core.delete_namespaced_service(f"{APP}-nodeport", NAMESPACE)
        for name in tainted:
            taints = core.read_node(name).spec.taints or []
            core.patch_node(name, {"spec": {"taints": [t.to_dict() for t in taints]
                                            + [{"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"}]}})


def test_node_is_ready_with_its_host_address(core, node_name, hostvars):
    node = core.read_node(node_name)
    ready = [c.status for c in node.status.conditions if c.type == "Ready"]
    assert ready == ["True"], node.status.conditions
    external = [a.address for a in node.status.addresses if a.type == "ExternalIP"]
    assert external == [hostvars["ansible_host"]]
    taints = {t.key for t in node.spec.taints or []}
    assert not taints & {"node.cloudprovider.kubernetes.io/uninitialized", "u7s.cluster/external-ip-pending"}
    # flannel took the host's address as its VXLAN endpoint.
    assert node.metadata.annotations["flannel.alpha.coreos.com/public-ip"] == hostvars["ansible_host"]


def test_kubelet_and_engine_do_not_run_as_root(host, cluster_user):
    uid = host.user(cluster_user).uid
    for process in ("kubelet", "containerd", "dockerd", "rootlesskit", "conmon", "podman"):
        owners = {int(p.euid) for p in host.process.filter(comm=process)}
        if process in ("kubelet", "containerd"):
            assert owners, f"no {process} process on the host"
        assert 0 not in owners, f"{process} runs as root: {owners}"
    # The node's root is the user's subordinate range (or the user itself), never uid 0.
    kubelet_uids = {int(p.euid) for p in host.process.filter(comm="kubelet")}
    assert all(u == uid or u >= 65536 for u in kubelet_uids), kubelet_uids


def test_statefulset_spreads_over_both_nodes(workload):
    assert len(set(workload.values())) == 2, workload


def test_pods_resolve_and_reach_every_replica_from_this_node(core, workload, node_name, busybox_image):
    # At least one replica lives on the other host: its traffic crosses VXLAN.
    assert any(node != node_name for node in workload.values()), workload
    script = "set -e; for i in 0 1 2; do " \
             f"h={APP}-$i.{APP}.{NAMESPACE}.svc.cluster.local; nslookup $h; wget -q -T 10 -O- http://$h; done"
    phase, log = run_pod(core, node_name, busybox_image, script)
    assert phase == "Succeeded", log
    for pod in workload:
        assert f"hello from {pod}" in log, log


def test_nodeport_answers_the_other_host(workload, other_host, hostvars):
    url = f"http://{hostvars['ansible_host']}:{NODE_PORT}/"
    fetch = "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
    answers = set()
    for _attempt in range(6):
        result = other_host.run(f"python3 -c {json.dumps(fetch)} {url}")
        assert result.rc == 0, result.stderr
        answers.add(result.stdout.strip())
    assert answers and all(a.startswith(f"hello from {APP}-") for a in answers), answers


def test_vxlan_checksum_offload_is_off(as_user, engine):
    """The node's own service keeps it off (no pod of the cluster reads the node's root filesystem)."""
    result = as_user(f"{engine} exec u7s-node ethtool --show-offload flannel.1")
    assert result.rc == 0, result.stderr
    assert "tx-checksum-ip-generic: off" in result.stdout, result.stdout
    service = as_user(f"{engine} exec u7s-node systemctl is-active u7s-vxlan-checksum.service")
    assert service.stdout.strip() == "active", service.stdout + service.stderr


CONTROL_PLANE_POD_PREFIXES = ("etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-")


def test_no_pod_mounts_the_nodes_root_or_its_secrets(core):
    """Only kubeadm's control-plane static pods mount the node's credentials; no pod mounts its root."""
    found = []
    for pod in core.list_pod_for_all_namespaces().items:
        control_plane = pod.metadata.namespace == "kube-system" and pod.metadata.name.startswith(CONTROL_PLANE_POD_PREFIXES)
        for volume in pod.spec.volumes or []:
            path = volume.host_path.path.rstrip("/") if volume.host_path else None
            if path == "" or (not control_plane and path and path.startswith(("/etc/kubernetes", "/var/lib/etcd"))):
                found.append((pod.metadata.namespace, pod.metadata.name, volume.host_path.path))
    assert found == []


def test_no_join_token_left_on_the_host(host, cluster_user):
    home = host.user(cluster_user).home
    assert not host.file(f"{home}/.config/u7s/node/kubeadm-join.yaml").exists


def test_kubectl_for_the_user_only_on_the_control_plane(host, hostvars, as_user, node_name):
    wrapper = f"{host.user(hostvars.get('u7s_user', 'u7s')).home}/.local/bin/kubectl"
    if "control_plane" in hostvars["group_names"]:
        result = as_user(f"{wrapper} get nodes -o name")
        assert result.rc == 0, result.stderr
        assert f"node/{node_name}" in result.stdout.split()
        assert len(result.stdout.split()) == 2, result.stdout
    else:
        assert not host.file(wrapper).exists


def test_no_bootstrap_token_outlives_the_configured_lifetime(core, hostvars):
    """kubeadm init's own token included (kubeadm's default is 24 h); the test bed keeps the 1 h default."""
    lifetime = datetime.timedelta(seconds=3600)
    now = datetime.datetime.now(datetime.timezone.utc)
    secrets = core.list_namespaced_secret("kube-system", field_selector="type=bootstrap.kubernetes.io/token").items
    assert secrets, "the joins left no token to check (kubeadm init creates one)"
    for secret in secrets:
        expiration = base64.b64decode((secret.data or {}).get("expiration", "")).decode()
        assert expiration, f"{secret.metadata.name} never expires"
        expires = datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        # Created during this scenario's converge, at most a lifetime ago.
        assert expires <= now + lifetime, (secret.metadata.name, expiration)
