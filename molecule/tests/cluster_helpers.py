"""Shared by the end-to-end checks: waiting, one-shot pods (the kubernetes client on the controller),
and running the collection's playbooks against the scenario's inventory and reading their output."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

NAMESPACE = "default"
TIMEOUT = 300
REPO = Path(__file__).resolve().parents[2]
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.M)


def run_playbook(playbook: str, *args: str, inventory: str | os.PathLike | None = None,
                 timeout: float = 1500, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run playbooks/<playbook> (molecule's inventory unless another is given); never raises on failure.

    Without colour: molecule forces it on, and the recap parsers below would not match.
    """
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory or os.environ["MOLECULE_INVENTORY_FILE"]),
         str(REPO / "playbooks" / playbook), *args],
        capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="false", **(env or {})))


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts by host: {"host1": {"ok": 12, "changed": 0, "failed": 0, ...}}."""
    return {host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in RECAP_LINE.findall(stdout)}


def changed_tasks(stdout: str) -> dict[str, list[str]]:
    """Host -> the tasks that changed the host itself, from the default callback's output.

    Tasks delegated to the controller ("changed: [host1 -> localhost]": the API calls that run once,
    such as setting the new node's addresses) are left out: they change the cluster, not that host.
    """
    found: dict[str, list[str]] = {}
    task = None
    for line in stdout.splitlines():
        header = re.match(r"^TASK \[(.*)\] \**$", line)
        if header:
            task = header.group(1)
            continue
        changed = re.match(r"^changed: \[([^\]\s]+)\]", line)
        if changed and task:
            found.setdefault(changed.group(1), []).append(task)
    return found


def wait_for(what: str, probe, timeout: float = TIMEOUT, interval: float = 3):
    """Return probe()'s first truthy value, or fail after timeout with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def run_pod(core, node: str, image: str, script: str) -> tuple[str, str]:
    """Run a one-shot pod on node (an image the node has); return its phase and log."""
    name = f"client-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": name},
        "spec": {"nodeName": node, "restartPolicy": "Never",
                 "containers": [{"name": "client", "image": image, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", script]}]},
    })
    try:
        phase = wait_for(f"pod {name} to finish", lambda: (
            core.read_namespaced_pod(name, NAMESPACE).status.phase in ("Succeeded", "Failed")
            and core.read_namespaced_pod(name, NAMESPACE).status.phase))
        return phase, core.read_namespaced_pod_log(name, NAMESPACE)
    finally:
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


def scenario_engine() -> str:
    """The engine of the scenario's hosts (u7s_engine of the first cluster host)."""
    from testinfra.utils.ansible_runner import AnsibleRunner  # pylint: disable=import-outside-toplevel
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return runner.get_variables(sorted(runner.get_hosts("u7s_cluster"))[0]).get("u7s_engine", "docker")


# The lifecycle checks that bring the cluster up again (adding and removing a node, reset) run once,
# in the default scenario (Docker): the podman scenario spends its time on the upgrade instead
# (CI's time budget); they are reported as skipped there, not passed.
DOCKER_SCENARIO_ONLY = pytest.mark.skipif(
    "MOLECULE_INVENTORY_FILE" in os.environ and scenario_engine() != "docker",
    reason="lifecycle bring-ups run in the default (Docker) scenario only; the podman scenario runs the upgrade")


def pinned_version(file: str) -> str:
    """K8S_VERSION of artifacts/<file> (versions.env: the current pin; versions-previous.env: the one before)."""
    return re.search(r"^K8S_VERSION=(\S+)$", (REPO / "artifacts" / file).read_text(), re.M).group(1)


def scenario_kubernetes_version() -> str:
    """The Kubernetes version the scenario brought its cluster up at (u7s_kubernetes_version of the first host)."""
    from testinfra.utils.ansible_runner import AnsibleRunner  # pylint: disable=import-outside-toplevel
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return runner.get_variables(sorted(runner.get_hosts("u7s_cluster"))[0]).get(
        "u7s_kubernetes_version", pinned_version("versions.env"))
