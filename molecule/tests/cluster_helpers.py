"""Shared by the end-to-end checks: waiting, one-shot pods (the kubernetes client on the controller),
and running the collection's playbooks against the scenario's inventory and reading their output."""

from __future__ import annotations

import os
import re
import shlex
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


def scenario_engines() -> set[str]:
    """The engines of the scenario's hosts (u7s_engine of each cluster host)."""
    from testinfra.utils.ansible_runner import AnsibleRunner  # pylint: disable=import-outside-toplevel
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return {runner.get_variables(name).get("u7s_engine", "docker") for name in runner.get_hosts("u7s_cluster")}


# The lifecycle checks that bring the cluster up again (adding and removing a node, reset) run once,
# in the default scenario (Docker): the podman-nerdctl scenario checks its engines' nodes and the ha
# scenario runs the upgrade on every engine (CI's time budget); they are reported as skipped there, not passed.
DOCKER_SCENARIO_ONLY = pytest.mark.skipif(
    "MOLECULE_INVENTORY_FILE" in os.environ and scenario_engines() != {"docker"},
    reason="lifecycle bring-ups run in the default (Docker) scenario only (CI's time budget)")


def bypass4netns_expected(host, variables: dict) -> bool:
    """Whether the host's node runs with bypass4netns: nerdctl, u7s_bypass4netns not false (auto is the
    default) and Linux 5.9 or later (the settings check's rule, module_utils/bypass4netns.py)."""
    release = host.check_output("uname -r")
    return (variables.get("u7s_engine", "docker") == "nerdctl"
            and variables.get("u7s_bypass4netns", "auto") not in (False, "false")
            and tuple(int(part) for part in release.split(".")[:2]) >= (5, 9))


def bypass4netns_log(host, user: str) -> str:
    """The log of the node's bypass4netns (nerdctl keeps it in the container's state directory)."""
    return host.run(
        f"sudo sh -c 'cat {host.user(user).home}/.local/share/nerdctl/*/containers/default/*/bypass4netns.log'").stdout


def control_plane_hosts() -> list[str]:
    """The scenario's control-plane hosts (none outside molecule)."""
    if "MOLECULE_INVENTORY_FILE" not in os.environ:
        return []
    from testinfra.utils.ansible_runner import AnsibleRunner  # pylint: disable=import-outside-toplevel
    return AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("control_plane")


# The HA checks (the ha scenario: 3 control planes and a worker).
THREE_CONTROL_PLANES = pytest.mark.skipif(
    len(control_plane_hosts()) != 3,
    reason="needs an inventory with 3 control planes (the ha scenario; testbed: U7S_TESTBED_CONTROL_PLANES=3 and 4 hosts)")


def pinned_version(file: str) -> str:
    """K8S_VERSION of artifacts/<file> (versions.env: the current pin; versions-previous.env: the one before)."""
    return re.search(r"^K8S_VERSION=(\S+)$", (REPO / "artifacts" / file).read_text(), re.M).group(1)


def scenario_kubernetes_version() -> str:
    """The Kubernetes version the scenario brought its cluster up at (u7s_kubernetes_version of the first host)."""
    from testinfra.utils.ansible_runner import AnsibleRunner  # pylint: disable=import-outside-toplevel
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return runner.get_variables(sorted(runner.get_hosts("u7s_cluster"))[0]).get(
        "u7s_kubernetes_version", pinned_version("versions.env"))


# What hosts.yml writes on each host and a default reset keeps (u7s_reset_hosts=false).
HOST_FILES_KEPT = ["/etc/systemd/system/user@.service.d/delegate.conf", "/etc/modules-load.d/u7s.conf",
                   "/etc/sysctl.d/99-u7s.conf", "/var/lib/systemd/linger/{user}", "/var/lib/u7s/host_prereqs/{user}.json"]
# Each engine's user unit that hosts.yml writes or enables, and how systemd reports it kept:
# rootless_runtime's configure-<engine>.yml (Podman runs no daemon; its restart unit is enabled).
ENGINE_UNIT_KEPT = {
    "docker": ("{home}/.config/systemd/user/docker.service", "is-active docker.service", "active"),
    "nerdctl": ("{home}/.config/systemd/user/containerd.service", "is-active containerd.service", "active"),
    "podman": ("{home}/.config/systemd/user/default.target.wants/podman-restart.service",
               "is-enabled podman-restart.service", "enabled"),
}
# What the node, kubeadm and firewall roles write and every reset removes.
NODE_FILES_GONE = ["{home}/.local/state/u7s/node.json", "{home}/.config/u7s/node", "{home}/.local/bin/kubectl",
                   "/etc/u7s/firewall-{user}.nft", "/etc/systemd/system/u7s-firewall-{user}.service"]


class Host:
    """A test-bed host and its cluster user's engine (the scenario's engine: u7s_engine)."""

    def __init__(self, inventory: str, name: str, variables: dict):
        self.name = name
        import testinfra  # pylint: disable=import-outside-toplevel
        self.host = testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)
        self.user = variables.get("u7s_user", "u7s")
        self.engine = variables.get("u7s_engine", "docker")
        self.home = self.host.user(self.user).home

    def as_user(self, command: str):
        uid = self.host.user(self.user).uid
        env = f"XDG_RUNTIME_DIR=/run/user/{uid} DOCKER_HOST=unix:///run/user/{uid}/docker.sock"
        return self.host.run(f"sudo -H -u {self.user} env {env} sh -c {shlex.quote('cd ~ && ' + command)}")

    def path(self, template: str) -> str:
        return template.format(user=self.user, home=self.home)

    def exists(self, path: str) -> bool:
        return self.host.run(f"sudo test -e {shlex.quote(path)}").rc == 0

    def names(self, what: str) -> list[str]:
        """The names of the user's containers, volumes or networks, or the node images' references."""
        commands = {"containers": f"{self.engine} ps -a --format '{{{{.Names}}}}'",
                    "volumes": f"{self.engine} volume ls --format '{{{{.Name}}}}'",
                    "networks": f"{self.engine} network ls --format '{{{{.Name}}}}'",
                    "images": f"{self.engine} images --format '{{{{.Repository}}}}:{{{{.Tag}}}}'"}
        result = self.as_user(commands[what])
        assert result.rc == 0, (self.name, what, result.stderr)
        return sorted(line for line in result.stdout.split() if line)

    def fingerprint(self) -> dict:
        """What the roles leave on the host, as the reset checks it."""
        return {
            "node_objects": {"containers": [n for n in self.names("containers") if n.startswith("u7s-node")],
                             "volumes": [n for n in self.names("volumes") if n.startswith("u7s-node")],
                             "networks": [n for n in self.names("networks") if n == "u7s-node"]},
            "images": [n for n in self.names("images") if n.startswith("localhost/u7s/node:")],
            "kept": {path: self.exists(self.path(path)) for path in HOST_FILES_KEPT + [ENGINE_UNIT_KEPT[self.engine][0]]},
            "gone": {path: self.exists(self.path(path)) for path in NODE_FILES_GONE},
            "firewall_table": self.host.run(f"sudo nft list table inet u7s_{self.user}").rc == 0,
            "subuid": self.host.run("cat /etc/subuid").stdout,
            "subgid": self.host.run("cat /etc/subgid").stdout,
            "engine_unit": self.as_user(f"systemctl --user {ENGINE_UNIT_KEPT[self.engine][1]}").stdout.strip(),
        }


def assert_no_node_left(host: Host) -> None:
    found = host.fingerprint()
    assert found["node_objects"] == {"containers": [], "volumes": [], "networks": []}, (host.name, found["node_objects"])
    assert not any(found["gone"].values()), (host.name, found["gone"])
    assert not found["firewall_table"], host.name
    # A default reset keeps what hosts.yml made: the prerequisites, the engine and the node image.
    assert all(found["kept"].values()), (host.name, found["kept"])
    assert found["engine_unit"] == ENGINE_UNIT_KEPT[host.engine][2], (host.name, host.engine, found["engine_unit"])
    assert found["images"], (host.name, "the node image stays without u7s_reset_node_image")
