"""The kubeadm role adopts a running cluster whose completion markers are gone, and chmods no directory it did not create.

Issue 12, findings 4 and 5, on the running two-host cluster: both markers are removed from the node
containers, playbooks/cluster.yml runs once more (with the controller's kubeconfig in a shared 1777
directory), and nothing was reset: the kube-system namespace, the cluster CA and the worker's
kubelet.conf are the same, the markers are back, the output says why. One playbook run for all checks.
"""

from __future__ import annotations

import os
import re
import shlex
import stat

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from cluster_helpers import Host, run_playbook

INIT_MARKER = "/etc/kubernetes/u7s-init.done"
JOIN_MARKER = "/etc/kubernetes/u7s-join.done"


class Node(Host):
    """A test-bed host's node container, reached as the cluster user through its engine."""

    def run(self, argv: list[str]):
        return self.as_user(shlex.join([self.engine, "exec", "u7s-node", *argv]))

    def check(self, argv: list[str]) -> str:
        result = self.run(argv)
        assert result.rc == 0, (self.name, argv, result.stderr)
        return result.stdout.strip()


def flat(stdout: str) -> str:
    """The output with the YAML result format's folding and quote doubling undone."""
    return " ".join(stdout.split()).replace("''", "'")


def task_output(stdout: str, name: str) -> str:
    """What the default callback printed under the task NAME (all its runs), headers excluded."""
    parts = re.split(r"^TASK \[([^\]]*)\] \**$", stdout, flags=re.M)
    return "\n".join(parts[i + 1] for i in range(1, len(parts) - 1, 2) if parts[i].endswith(" : " + name))


def assert_skipped(stdout: str, host: str, *tasks: str) -> None:
    """Each task printed nothing for HOST but its skipping (an include that ran prints "included: ... for HOST")."""
    for task in tasks:
        printed = task_output(stdout, task)
        assert not re.search(r"\b%s\b" % re.escape(host), printed.replace(f"skipping: [{host}]", "")), (task, printed)


@pytest.fixture(scope="module")
def rerun(core, tmp_path_factory):
    """Remove both markers, note what a reset would change, run cluster.yml once (~20 s)."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    runner = AnsibleRunner(inventory)
    control_plane = runner.get_hosts("control_plane")[0]
    worker = runner.get_hosts("workers")[0]
    cp_node = Node(inventory, control_plane, runner.get_variables(control_plane))
    worker_node = Node(inventory, worker, runner.get_variables(worker))

    before = {
        "namespace": core.read_namespace("kube-system").metadata.uid,
        "ca": cp_node.check(["stat", "-c", "%Y %i", "/etc/kubernetes/pki/ca.crt"]),
        "kubelet_conf": worker_node.check(["stat", "-c", "%Y %i", "/etc/kubernetes/kubelet.conf"]),
        "worker": core.read_node(f"u7s-{worker}").metadata.uid,
    }
    cp_node.check(["rm", INIT_MARKER])
    worker_node.check(["rm", JOIN_MARKER])

    # Finding 4: a kubeconfig in a directory others share (as /tmp is) leaves the directory's mode alone.
    shared = tmp_path_factory.mktemp("shared")
    shared.chmod(0o1777)
    result = run_playbook("cluster.yml", "-e", "u7s_kubeconfig=%s" % (shared / "kubeconfig"), inventory=inventory, timeout=600)
    yield {"result": result, "before": before, "control_plane": cp_node, "worker": worker_node, "shared": shared}
    # A failed run leaves the later checks the markers they started from (a working cluster's).
    if result.returncode != 0:
        cp_node.run(["touch", INIT_MARKER])
        worker_node.run(["touch", JOIN_MARKER])


def test_the_rerun_succeeds(rerun):
    result = rerun["result"]
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_a_control_plane_without_its_marker_is_adopted_not_reset(rerun, core):
    result, before, node = rerun["result"], rerun["before"], rerun["control_plane"]
    assert core.read_namespace("kube-system").metadata.uid == before["namespace"]
    assert node.check(["stat", "-c", "%Y %i", "/etc/kubernetes/pki/ca.crt"]) == before["ca"]
    assert node.run(["test", "-e", INIT_MARKER]).rc == 0
    assert (f"{node.name}: kubeadm init was not marked complete ({INIT_MARKER} is missing), but the node's API "
            "server answers /readyz") in flat(result.stdout)
    assert "adopted the running control plane (wrote the marker); nothing was reset or initialized." in flat(result.stdout)
    assert_skipped(result.stdout, node.name, "Clear what an unfinished kubeadm init left", "Run kubeadm init")


def test_a_joined_worker_without_its_marker_is_adopted_not_reset(rerun, core):
    result, before, node = rerun["result"], rerun["before"], rerun["worker"]
    assert node.check(["stat", "-c", "%Y %i", "/etc/kubernetes/kubelet.conf"]) == before["kubelet_conf"]
    assert core.read_node(f"u7s-{node.name}").metadata.uid == before["worker"]
    assert node.run(["test", "-e", JOIN_MARKER]).rc == 0
    assert (f"{node.name}: kubeadm join was not marked complete ({JOIN_MARKER} is missing), but the node has "
            "/etc/kubernetes/kubelet.conf and the API knows it: adopted the joined node") in flat(result.stdout)
    assert_skipped(result.stdout, node.name, "Clear what an unfinished kubeadm join left", "Run kubeadm join")


def test_a_kubeconfig_in_a_shared_directory_leaves_its_mode_alone(rerun):
    shared = rerun["shared"]
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "kubeconfig").stat().st_mode) == 0o600
