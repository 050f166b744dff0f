"""Three control planes (stacked etcd) and a worker: a control-plane host goes down, the cluster goes on;
a control plane is removed (a removal that would lose etcd's quorum is refused) and joins again.

Needs an inventory with 3 control planes (testbed: U7S_TESTBED_HOSTS=4 U7S_TESTBED_CONTROL_PLANES=3
testbed/testbed.sh up); skipped otherwise. Test-bed hosts are containers named u7s-tb-<host>. Runs before
test_zzz_upgrade.py (the upgrade with 3 control planes, when the scenario starts at the previous pin) and
test_zzzz_ha_reset.py (reset.yml with 3 control planes).
"""

from __future__ import annotations

import base64
import datetime
import os
import shlex
import subprocess
import threading
import time

import pytest
from cluster_helpers import (NAMESPACE, THREE_CONTROL_PLANES, Host, changed_tasks, control_plane_hosts, recap, run_playbook,
                             wait_for)
from testinfra.utils.ansible_runner import AnsibleRunner

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")
pytestmark = THREE_CONTROL_PLANES
DEPLOYMENT = "ha-check"
OUTAGE_LIMIT = 60


def ready(core, node: str) -> bool:
    """Whether the node is Ready; False while the API does not answer (a control plane is down)."""
    try:
        conditions = core.read_node(node, _request_timeout=10).status.conditions or []
    except Exception:  # pylint: disable=broad-except
        return False
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def engine(host_name: str, arguments: str):
    """The cluster user's engine on host_name (u7s_engine) with the given shell-quoted arguments."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    host = Host(inventory, host_name, AnsibleRunner(inventory).get_variables(host_name))
    return host.as_user(f"{host.engine} {arguments}")


def etcdctl(host_name: str, *args: str, check: bool = True) -> str:
    """etcdctl in the etcd container of host_name's node, as the cluster user."""
    etcdctl_argv = ["etcdctl", "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
                    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                    "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
                    "--endpoints=https://127.0.0.1:2379", *args]
    # Quoted level by level: the node's shell finds the etcd container, the host's runs the engine.
    in_node = "crictl exec $(crictl ps -q --name '^etcd$' --state running) " + shlex.join(etcdctl_argv)
    result = engine(host_name, "exec u7s-node sh -c " + shlex.quote(in_node))
    assert result.rc == 0 or not check, result.stderr
    return result.stdout


def healthy_members(host_name: str) -> int:
    return etcdctl(host_name, "endpoint", "health", "--cluster", check=False).count("is healthy")


def endpoint_addresses(lines: str, name: str) -> list[str]:
    """The addresses a hosts file gives the endpoint's name."""
    return sorted(line.split()[0] for line in lines.splitlines()
                  if not line.lstrip().startswith("#") and name in line.split()[1:])


def host_address(host_name: str) -> str:
    variables = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_variables(host_name)
    return variables.get("u7s_host_ip") or variables["ansible_host"]


def test_every_node_is_ready_and_etcd_has_three_members_by_host_address(core):
    control_planes = control_plane_hosts()
    for node in core.list_node().items:
        assert ready(core, node.metadata.name), node.metadata.name
    members = etcdctl(control_planes[0], "member", "list", "-w", "simple").strip().splitlines()
    assert len(members) == 3, members
    for host_name in control_planes:
        line = next((line for line in members if f"u7s-{host_name}," in line), None)
        assert line and ", started," in line, members
        assert f"https://{host_address(host_name)}:2380" in line, line


def test_no_uploaded_certificates_nor_a_token_beyond_the_lifetime_left(core):
    """upload-certs' Secret and the 2 h token that owns it are gone once the control planes joined."""
    assert not core.list_namespaced_secret("kube-system", field_selector="metadata.name=kubeadm-certs").items
    lifetime = datetime.timedelta(seconds=3600)  # the test bed keeps kubeadm_join_token_ttl's 1 h
    now = datetime.datetime.now(datetime.timezone.utc)
    for secret in core.list_namespaced_secret("kube-system", field_selector="type=bootstrap.kubernetes.io/token").items:
        expiration = base64.b64decode((secret.data or {}).get("expiration", "")).decode()
        assert expiration, f"{secret.metadata.name} never expires"
        expires = datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        assert expires <= now + lifetime, (secret.metadata.name, expiration)


class _Poller(threading.Thread):
    """Asks the API every second; records the longest time without an answer."""

    def __init__(self, probe):
        super().__init__(daemon=True)
        self.probe, self.stop, self.longest, self.last_ok = probe, threading.Event(), 0.0, time.monotonic()
        self.asked = self.failed = 0

    def run(self):
        while not self.stop.is_set():
            self.asked += 1
            try:
                self.probe()
                self.last_ok = time.monotonic()
            except Exception:  # pylint: disable=broad-except
                self.failed += 1
                self.longest = max(self.longest, time.monotonic() - self.last_ok)
            time.sleep(1)


def _outage(core, busybox_image, victim: str):
    """Stop victim's host container, check the cluster works without it, start it again."""
    apps = client.AppsV1Api(core.api_client)
    workers = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("workers")
    worker_node = f"u7s-{workers[0]}"
    # A pod that asks the API (through the kubernetes Service) every second, on the worker.
    pod = f"ha-poll-{victim}"
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": pod},
        "spec": {"nodeName": worker_node, "restartPolicy": "Never",
                 "containers": [{"name": "poll", "image": busybox_image, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", "while true; do "
                                             "if wget -q -T 2 --no-check-certificate -O /dev/null "
                                             "https://kubernetes.default.svc/readyz; then echo ok $(date +%s); "
                                             "else echo fail $(date +%s); fi; sleep 1; done"]}]},
    })
    wait_for("the polling pod to run", lambda: core.read_namespaced_pod(pod, NAMESPACE).status.phase == "Running")
    poller = _Poller(lambda: core.list_namespace(_request_timeout=3))
    poller.start()
    subprocess.run(["docker", "stop", f"u7s-tb-{victim}"], check=True, capture_output=True, timeout=180)
    stopped = time.monotonic()
    try:
        apps.patch_namespaced_deployment_scale(DEPLOYMENT, NAMESPACE, {"spec": {"replicas": 4}})
        wait_for("the deployment scaled during the outage to get its pods", lambda: (
            (apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE).status.ready_replicas or 0) >= 4), timeout=180)
        print(f"{victim} down: the deployment had 4 ready pods after {time.monotonic() - stopped:.0f} s")
        assert ready(core, worker_node), "the worker is not Ready during the outage"
        time.sleep(10)
        print(f"{victim} down: controller's API requests {poller.asked}, failed {poller.failed}, "
              f"longest without an answer {poller.longest:.1f} s")
        assert poller.longest < OUTAGE_LIMIT, f"the API did not answer the controller for {poller.longest:.0f} s"
        log = core.read_namespaced_pod_log(pod, NAMESPACE)
        stamps = [int(line.split()[1]) for line in log.splitlines() if line.startswith("ok ")]
        gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
        print(f"{victim} down: the pod's API requests failed {log.count('fail ')} of "
              f"{len(log.splitlines())}, longest gap {max(gaps or [0])} s")
        assert stamps and max(gaps or [0]) < OUTAGE_LIMIT, f"the API did not answer the pod for {max(gaps)} s"
    finally:
        subprocess.run(["docker", "start", f"u7s-tb-{victim}"], check=True, capture_output=True, timeout=180)
    started = time.monotonic()
    before = (poller.asked, poller.failed)
    poller.longest = 0.0
    other = next(name for name in control_plane_hosts() if name != victim)
    try:
        wait_for("etcd to have 3 healthy members again", lambda: etcdctl(
            other, "endpoint", "health", "--cluster", check=False).count("is healthy") == 3, timeout=300)
        print(f"{victim} back: etcd has 3 healthy members {time.monotonic() - started:.0f} s after its start")
        wait_for(f"u7s-{victim} to be Ready again", lambda: ready(core, f"u7s-{victim}"), timeout=300)
        print(f"{victim} back: its node Ready {time.monotonic() - started:.0f} s after its start")
    finally:
        poller.stop.set()
        poller.join()
        print(f"{victim} coming back: controller's API requests {poller.asked - before[0]}, "
              f"failed {poller.failed - before[1]}, longest without an answer {poller.longest:.1f} s")
        core.delete_namespaced_pod(pod, NAMESPACE, grace_period_seconds=0)
        apps.patch_namespaced_deployment_scale(DEPLOYMENT, NAMESPACE, {"spec": {"replicas": 1}})
    assert poller.longest < OUTAGE_LIMIT, f"the API did not answer the controller for {poller.longest:.0f} s"


@pytest.fixture(scope="module")
def deployment(core, busybox_image):
    apps = client.AppsV1Api(core.api_client)
    apps.create_namespaced_deployment(NAMESPACE, {
        "metadata": {"name": DEPLOYMENT},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": DEPLOYMENT}},
                 "template": {"metadata": {"labels": {"app": DEPLOYMENT}},
                              "spec": {"containers": [{"name": "sleep", "image": busybox_image,
                                                       "imagePullPolicy": "Never",
                                                       "command": ["sleep", "3600"]}]}}},
    })
    yield DEPLOYMENT
    apps.delete_namespaced_deployment(DEPLOYMENT, NAMESPACE)


def test_a_second_control_plane_host_down(core, busybox_image, deployment):
    _outage(core, busybox_image, control_plane_hosts()[1])


def test_the_first_control_plane_host_down(core, busybox_image, deployment):
    _outage(core, busybox_image, control_plane_hosts()[0])


def _variables(host_name: str) -> dict:
    return AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_variables(host_name)


def test_a_removal_that_would_lose_etcds_quorum_is_refused_before_any_change(core):
    """One control plane's node is down: removing another would leave 1 healthy member of 2."""
    first, second, third = control_plane_hosts()
    assert engine(third, "stop u7s-node").rc == 0
    try:
        result = run_playbook("remove-node.yml", "-e", f"u7s_remove_node={second}")
        output = " ".join((result.stdout + result.stderr).split())
        print(f"remove-node.yml of {second} with {third}'s node stopped: rc {result.returncode}")
        assert result.returncode != 0
        assert "etcd needs 2 to keep writing" in output and f"{third} unhealthy" in output, output[-3000:]
        assert all(counts["changed"] == 0 for counts in recap(result.stdout).values()), changed_tasks(result.stdout)
    finally:
        assert engine(third, "start u7s-node").rc == 0
    started = time.monotonic()
    wait_for("etcd to have 3 healthy members again", lambda: healthy_members(first) == 3, timeout=300)
    wait_for(f"u7s-{third} to be Ready again", lambda: ready(core, f"u7s-{third}"), timeout=300)
    print(f"{third}'s node back: 3 healthy etcd members and Ready {time.monotonic() - started:.0f} s after its start")
    assert ready(core, f"u7s-{second}")


def test_a_control_plane_is_removed_then_joins_again(core):
    first, second, third = control_plane_hosts()
    name = _variables(first).get("u7s_control_plane_endpoint_name", "u7s-apiserver")
    hosts_file = _variables(first).get("u7s_controller_hosts_file", "/etc/hosts")
    started = time.monotonic()
    result = run_playbook("remove-node.yml", "-e", f"u7s_remove_node={second}")
    print(f"remove-node.yml of control plane {second}: {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert f"u7s-{second}" not in [node.metadata.name for node in core.list_node().items]
    members = etcdctl(first, "member", "list", "-w", "simple").strip().splitlines()
    assert len(members) == 2 and not any(f"u7s-{second}," in line for line in members), members
    assert healthy_members(first) == 2
    remaining = sorted(host_address(host) for host in (first, third))
    with open(hosts_file, encoding="utf-8") as controller_hosts:
        assert endpoint_addresses(controller_hosts.read(), name) == remaining
    workers = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("workers")
    in_node = engine(workers[0], "exec u7s-node cat /etc/hosts")
    assert in_node.rc == 0 and endpoint_addresses(in_node.stdout, name) == remaining, in_node.stdout

    started = time.monotonic()
    result = run_playbook("site.yml")
    print(f"site.yml joined {second} again as a control plane: {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    wait_for(f"u7s-{second} to be Ready", lambda: ready(core, f"u7s-{second}"))
    node = core.read_node(f"u7s-{second}")
    assert "node-role.kubernetes.io/control-plane" in (node.metadata.labels or {})
    members = etcdctl(first, "member", "list", "-w", "simple").strip().splitlines()
    assert len(members) == 3 and all(", started," in line for line in members), members
    wait_for("etcd to have 3 healthy members", lambda: healthy_members(first) == 3)
    with open(hosts_file, encoding="utf-8") as controller_hosts:
        assert endpoint_addresses(controller_hosts.read(), name) == sorted(map(host_address, control_plane_hosts()))


def test_site_changes_nothing_afterwards():
    result = run_playbook("site.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert all(counts["changed"] == 0 for counts in recap(result.stdout).values()), changed_tasks(result.stdout)
