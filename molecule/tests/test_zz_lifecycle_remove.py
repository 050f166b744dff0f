"""After test_zz_host_restart.py (file order): remove a worker, refuse what remove-node.yml must refuse, bring the
worker back (issue 9, items 1 and 3). One module-scoped sequence, each step a test in order:

remove-node.yml (worker) -> the worker's Node is gone, the control plane stays Ready, the worker's host holds
nothing of the node, nobody's subordinate ids moved -> the only control plane and --limit refused -> site.yml ->
2 nodes Ready. reset.yml and its second run are checked once, in the ha scenario (test_zzzz_ha_reset.py: Docker,
3 control planes and a worker, the same checks of what every host keeps and loses): CI's time budget.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from cluster_helpers import DOCKER_SCENARIO_ONLY, Host, assert_no_node_left, recap, run_playbook

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")
pytestmark = DOCKER_SCENARIO_ONLY
config = pytest.importorskip("kubernetes.config", reason="the kubernetes Python library is a controller requirement")


def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    return run_playbook(name, *args, timeout=1200)


@pytest.fixture(scope="module")
def bed():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    runner = AnsibleRunner(inventory)
    control_plane, worker = runner.get_hosts("control_plane")[0], runner.get_hosts("workers")[0]
    hosts = {name: Host(inventory, name, runner.get_variables(name)) for name in (control_plane, worker)}
    kubeconfig = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "kubeconfig")
    return {"control_plane": control_plane, "worker": worker, "hosts": hosts, "kubeconfig": kubeconfig}


def core_api(kubeconfig: str):
    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


def ready_nodes(kubeconfig: str) -> list[str]:
    return sorted(node.metadata.name for node in core_api(kubeconfig).list_node().items
                  if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []))


def test_1_remove_node_removes_the_worker(bed):
    before = {name: (host.host.run("cat /etc/subuid").stdout, host.host.run("cat /etc/subgid").stdout)
              for name, host in bed["hosts"].items()}
    result = playbook("remove-node.yml", "-e", f"u7s_remove_node={bed['worker']}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # The check play reads every host; only the removed one changes.
    changed = {host for host, counts in recap(result.stdout).items() if counts.get("changed")}
    assert changed == {bed["worker"]}, "remove-node.yml changed another host"
    names = sorted(node.metadata.name for node in core_api(bed["kubeconfig"]).list_node().items)
    assert names == [f"u7s-{bed['control_plane']}"]
    assert ready_nodes(bed["kubeconfig"]) == names
    assert_no_node_left(bed["hosts"][bed["worker"]])
    # The control plane's node is untouched; nobody's subordinate ids moved.
    assert bed["hosts"][bed["control_plane"]].fingerprint()["node_objects"]["containers"] == ["u7s-node"]
    for name, host in bed["hosts"].items():
        assert (host.host.run("cat /etc/subuid").stdout, host.host.run("cat /etc/subgid").stdout) == before[name]


def test_2_remove_node_refuses_the_control_plane_and_limit(bed):
    result = playbook("remove-node.yml", "-e", f"u7s_remove_node={bed['control_plane']}")
    assert result.returncode != 0 and "control-plane host" in " ".join((result.stdout + result.stderr).split())
    result = playbook("remove-node.yml", "--limit", bed["worker"], "-e", f"u7s_remove_node={bed['worker']}")
    assert result.returncode != 0 and "does not take --limit" in " ".join((result.stdout + result.stderr).split())


def test_3_site_brings_the_worker_back(bed):
    result = playbook("site.yml")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert ready_nodes(bed["kubeconfig"]) == sorted(f"u7s-{name}" for name in bed["hosts"])
