"""Last of the checks (file order): a worker host restarts, like a reboot, and the cluster heals by itself.

The firewall unit loads its table at boot; linger starts the user's engine, which restarts the node
container (restart policy always); the kubelet renews its lease, flannel turns checksum offload off
on the new VXLAN device, and pods on the two hosts reach each other again. Test-bed hosts are containers named u7s-tb-<host>.
"""

from __future__ import annotations

import datetime
import os
import subprocess

import pytest
import testinfra
from cluster_helpers import NAMESPACE, bypass4netns_expected, bypass4netns_log, run_pod, wait_for
from testinfra.utils.ansible_runner import AnsibleRunner

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")

SERVER = "restart-check-server"


def ready(core, node: str) -> bool:
    conditions = core.read_node(node).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def bypassed_since(host, user: str, since: datetime.datetime) -> list[str]:
    """The node's bypass4netns log lines of connect(2)s it bypassed at or after SINCE."""
    found = []
    for line in bypass4netns_log(host, user).splitlines():
        if "bypassed connect socket" not in line or not line.startswith('time="'):
            continue
        stamp = datetime.datetime.fromisoformat(line[6:line.index('"', 6)].replace("Z", "+00:00"))
        if stamp >= since.replace(microsecond=0):
            found.append(line)
    return found


def test_a_restarted_worker_comes_back(core, busybox_image):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    runner = AnsibleRunner(inventory)
    worker, control_plane = runner.get_hosts("workers")[0], runner.get_hosts("control_plane")[0]
    worker_node, control_plane_node = f"u7s-{worker}", f"u7s-{control_plane}"
    worker_vars = runner.get_variables(worker)
    engine = worker_vars.get("u7s_engine", "docker")
    user = worker_vars.get("u7s_user", "u7s")

    restarted_at = datetime.datetime.now(datetime.timezone.utc)
    subprocess.run(["docker", "restart", f"u7s-tb-{worker}"], check=True, capture_output=True, timeout=180)

    lease = client.CoordinationV1Api(core.api_client)
    wait_for("the worker's kubelet to renew its lease after the restart", lambda: (
        lease.read_namespaced_lease(worker_node, "kube-node-lease").spec.renew_time > restarted_at))
    wait_for("the worker to be Ready", lambda: ready(core, worker_node))
    wait_for("flannel, kube-proxy and the other system pods on the worker to be ready again", lambda: all(
        pod.status.container_statuses and all(c.ready for c in pod.status.container_statuses)
        for pod in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={worker_node}").items
        if pod.metadata.namespace in ("kube-system", "kube-flannel")))

    host = testinfra.get_host(f"ansible://{worker}", ansible_inventory=inventory)
    # The firewall's unit loads its table at boot (u7s_<user>: the test bed's user is a plain name).
    assert host.run(f"sudo nft list table inet u7s_{user}").rc == 0, "no firewall table after the restart"
    uid = host.user(user).uid
    env = f"XDG_RUNTIME_DIR=/run/user/{uid} DOCKER_HOST=unix:///run/user/{uid}/docker.sock"
    wait_for("tx checksum offload off on the new flannel.1", lambda: "tx-checksum-ip-generic: off" in host.run(
        f"sudo -H -u {user} env {env} sh -c 'cd ~ && {engine} exec u7s-node ethtool --show-offload flannel.1'").stdout)

    if bypass4netns_expected(host, worker_vars):
        # Acceleration survives the restart: the daemon started a new bypass4netns for the node,
        # which hands the node's kubelet a host socket for the API server again.
        wait_for("a bypass4netns for the node again, bypassing a connect(2) since the restart",
                 lambda: bypassed_since(host, user, restarted_at))
        assert host.run(f"pgrep -u {user} -x bypass4netns").rc == 0, "no bypass4netns after the restart"

    # Pod to pod across the hosts again: a server on the worker, a client on the control plane.
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": SERVER},
        "spec": {"nodeName": worker_node, "containers": [{
            "name": "web", "image": busybox_image, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "mkdir -p /www && echo after-restart > /www/index.html && exec httpd -f -p 80 -h /www"],
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2}}]},
    })
    try:
        server_ip = wait_for("the server pod on the worker", lambda: (
            core.read_namespaced_pod(SERVER, NAMESPACE).status.pod_ip
            if any(c.type == "Ready" and c.status == "True"
                   for c in core.read_namespaced_pod(SERVER, NAMESPACE).status.conditions or []) else None))
        phase, log = run_pod(core, control_plane_node, busybox_image, f"wget -q -T 10 -O- http://{server_ip}/")
        assert phase == "Succeeded", log
        assert "after-restart" in log
    finally:
        core.delete_namespaced_pod(SERVER, NAMESPACE, grace_period_seconds=0)
