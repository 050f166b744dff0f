"""Adding a node to the running cluster, and removing it again (after the other checks, file order).

A third test-bed host (testbed.sh add 3) is appended to a copy of molecule's inventory and
playbooks/site.yml runs once over all three: the new host joins; the existing hosts change
nothing but their firewall's address set (the new host must reach their kubelet and VXLAN
ports), and no existing pod restarts. Pods on the first host reach a server on the new one.
Then playbooks/remove-node.yml takes it out again and the cluster stays Ready.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

from cluster_helpers import DOCKER_SCENARIO_ONLY, NAMESPACE, REPO, changed_tasks, run_playbook, run_pod, wait_for

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")
pytestmark = DOCKER_SCENARIO_ONLY

NEW_HOST = "host3"
NEW_NODE = f"u7s-{NEW_HOST}"
SERVER = "added-node-server"
# What an existing host may change when a host joins: its firewall lets the new host in.
FIREWALL_TASKS = ("u7s.cluster.firewall : Write the rules (one table of this cluster's own)",
                  "u7s.cluster.firewall : Load the rules now and at every boot")


def ready_nodes(core) -> set[str]:
    return {node.metadata.name for node in core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])}


@pytest.fixture(scope="module")
def grown(core, tmp_path_factory):
    """The three-host inventory, with the new host joined by one site.yml run over all hosts."""
    molecule_inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    entry = subprocess.run([str(REPO / "testbed/testbed.sh"), "add", NEW_HOST.removeprefix("host")],
                           capture_output=True, text=True, check=True, timeout=600).stdout
    inventory = yaml.safe_load(molecule_inventory.read_text())
    host_vars = yaml.safe_load(entry)[NEW_HOST]
    inventory["all"]["hosts"][NEW_HOST] = host_vars
    for group in ("u7s_cluster", "workers"):
        inventory[group].setdefault("hosts", {})[NEW_HOST] = {}
    # Not in molecule's inventory directory (every file there is read as inventory, by later
    # scenarios too), but beside a link to its group_vars, so the same settings apply.
    directory = tmp_path_factory.mktemp("three-hosts")
    (directory / "group_vars").symlink_to(molecule_inventory.parent / "group_vars")
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))

    # The host restart checked before this one may still be restarting pods: start from a settled cluster.
    wait_for("every pod ready before the new host joins", lambda: all(
        pod.status.phase == "Succeeded" or (pod.status.container_statuses
                                            and all(c.ready for c in pod.status.container_statuses))
        for pod in core.list_pod_for_all_namespaces().items))
    time.sleep(15)
    pods = {pod.metadata.uid: (pod.metadata.namespace, pod.metadata.name,
                               sum(s.restart_count for s in pod.status.container_statuses or []))
            for pod in core.list_pod_for_all_namespaces().items}
    started = time.monotonic()
    result = run_playbook("site.yml", inventory=path)
    return {"inventory": path, "result": result, "seconds": time.monotonic() - started, "pods_before": pods}


def test_the_new_host_joins_with_one_run(grown, core):
    result = grown["result"]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(f"site.yml adding {NEW_HOST}: {grown['seconds']:.0f} s")
    wait_for("three Ready nodes", lambda: {"u7s-host1", "u7s-host2", NEW_NODE} <= ready_nodes(core))


def test_existing_hosts_change_only_their_firewall(grown):
    changed = changed_tasks(grown["result"].stdout)
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    for host in runner.get_hosts("u7s_cluster"):
        assert set(changed.get(host, [])) <= set(FIREWALL_TASKS), (host, changed.get(host))
    assert changed.get(NEW_HOST), "the new host reported no change"


def test_no_existing_pod_restarted(grown, core):
    now = {pod.metadata.uid: sum(s.restart_count for s in pod.status.container_statuses or [])
           for pod in core.list_pod_for_all_namespaces().items}
    for uid, (namespace, name, restarts) in grown["pods_before"].items():
        assert uid in now, f"{namespace}/{name} was replaced"
        assert now[uid] == restarts, f"{namespace}/{name} restarted"


def test_pods_reach_a_server_on_the_new_node(grown, core, busybox_image):
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": SERVER},
        "spec": {"nodeName": NEW_NODE, "containers": [{
            "name": "web", "image": busybox_image, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "mkdir -p /www && echo on-the-new-node > /www/index.html && exec httpd -f -p 80 -h /www"],
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2}}]},
    })
    try:
        server_ip = wait_for("the server pod on the new node", lambda: (
            core.read_namespaced_pod(SERVER, NAMESPACE).status.pod_ip
            if any(c.type == "Ready" and c.status == "True"
                   for c in core.read_namespaced_pod(SERVER, NAMESPACE).status.conditions or []) else None))
        phase, log = run_pod(core, "u7s-host1", busybox_image, f"wget -q -T 10 -O- http://{server_ip}/")
        assert phase == "Succeeded", log
        assert "on-the-new-node" in log
    finally:
        core.delete_namespaced_pod(SERVER, NAMESPACE, grace_period_seconds=0)


def test_the_added_node_is_removed_again(grown, core):
    """remove-node.yml: drained, deleted from the API, its host reset; the other nodes stay Ready."""
    started = time.monotonic()
    result = run_playbook("remove-node.yml", "-e", f"u7s_remove_node={NEW_HOST}", inventory=grown["inventory"])
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(f"remove-node.yml {NEW_HOST}: {seconds:.0f} s")
    assert NEW_NODE not in {node.metadata.name for node in core.list_node().items}
    wait_for("the other nodes Ready", lambda: ready_nodes(core) == {"u7s-host1", "u7s-host2"})
    changed = changed_tasks(result.stdout)
    assert set(changed) <= {NEW_HOST, "localhost"}, changed
