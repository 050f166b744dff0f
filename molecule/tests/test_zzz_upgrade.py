"""playbooks/upgrade.yml end to end: the previous minor to the current pin, while a workload answers HTTP.

The ha scenario (three control planes on Docker, Podman and nerdctl, a Docker worker: every engine's
image staging) brings its hosts up at the version of artifacts/versions-previous.env (its host_vars);
this runs after its other checks (file order), which then saw the previous version and ran their
playbooks with that inventory. The other scenarios bring the current pin up: there it is
skipped, reported so. A Deployment with two replicas (one per node, a PodDisruptionBudget
keeps one) answers on a NodePort; a client
on the controller asks every 0.2 s, trying the other host when one does not answer (as a load
balancer in front of the hosts would). The upgrade to artifacts/versions.env's pin then runs once;
the failed requests are counted and reported. A second run changes nothing, and a downgrade is
refused before anything changes.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.request

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from cluster_helpers import (NAMESPACE, pinned_version, recap, run_playbook,
                             scenario_kubernetes_version, wait_for)

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")

PREVIOUS, CURRENT = pinned_version("versions-previous.env"), pinned_version("versions.env")
pytestmark = pytest.mark.skipif(
    "MOLECULE_INVENTORY_FILE" in os.environ and scenario_kubernetes_version() != PREVIOUS,
    reason=f"the scenario's cluster is not at the previous pin {PREVIOUS} (the ha scenario's is): nothing to upgrade")
APP = "upgrade-web"
NODE_PORT = 30080
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


def kubelet_versions(core) -> dict[str, str]:
    return {node.metadata.name: node.status.node_info.kubelet_version for node in core.list_node().items}


def all_ready(core) -> bool:
    return all(any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
               for node in core.list_node().items)


class Prober(threading.Thread):
    """Asks the NodePort every 0.2 s, the next host on failure; counts what failed, and when and how."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__(daemon=True)
        self.addresses = addresses
        self.stop = threading.Event()
        self.requests = self.first_try_failed = self.failed = 0
        # (wall-clock time, {address: error}) of every request that no host answered.
        self.failures: list[tuple[float, dict[str, str]]] = []

    def run(self) -> None:
        turn = 0
        while not self.stop.is_set():
            self.requests += 1
            ok = False
            errors = {}
            for attempt in range(len(self.addresses)):
                address = self.addresses[(turn + attempt) % len(self.addresses)]
                try:
                    with urllib.request.urlopen(f"http://{address}:{NODE_PORT}/", timeout=2) as answer:
                        ok = b"upgrade-web" in answer.read()
                except OSError as error:
                    errors[address] = type(getattr(error, "reason", error)).__name__
                    ok = False
                if ok:
                    break
                if attempt == 0:
                    self.first_try_failed += 1
            if not ok:
                self.failed += 1
                self.failures.append((time.time(), errors))
            turn += 1
            time.sleep(0.2)


# profile_tasks prints the wall clock under each task header.
TASK_HEADER = re.compile(r"^TASK \[(?P<task>.*)\] \**\n\w+ \d+ \w+ \d{4}\s+(?P<clock>\d\d:\d\d:\d\d)", re.M)


def failure_windows(failures: list[tuple[float, dict[str, str]]], stdout: str) -> list[str]:
    """The prober's failures grouped into windows (gaps under 5 s), each with the task that was running."""
    tasks = []
    for match in TASK_HEADER.finditer(stdout):
        clock = time.strptime(match["clock"], "%H:%M:%S")
        tasks.append((clock.tm_hour * 3600 + clock.tm_min * 60 + clock.tm_sec, match["task"]))
    windows: list[list[tuple[float, dict[str, str]]]] = []
    for failure in failures:
        if windows and failure[0] - windows[-1][-1][0] < 5:
            windows[-1].append(failure)
        else:
            windows.append([failure])
    lines = []
    for window in windows:
        start = time.gmtime(window[0][0])
        second = start.tm_hour * 3600 + start.tm_min * 60 + start.tm_sec
        running = [task for at, task in tasks if at <= second]
        kinds = sorted({f"{address}: {error}" for _at, errors in window for address, error in errors.items()})
        lines.append(f"{time.strftime('%H:%M:%S', start)} +{window[-1][0] - window[0][0]:.0f} s: {len(window)} failed "
                     f"({', '.join(kinds)}) during [{running[-1] if running else '?'}]")
    return lines


@pytest.fixture(scope="module")
def workload(core, api, busybox_image):
    apps, policy = client.AppsV1Api(api), client.PolicyV1Api(api)
    for node in core.list_node().items:
        taints = [t.to_dict() for t in node.spec.taints or [] if t.key != CONTROL_PLANE_TAINT]
        core.patch_node(node.metadata.name, {"spec": {"taints": taints}})
    labels = {"app": APP}
    apps.create_namespaced_deployment(NAMESPACE, {
        "metadata": {"name": APP},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": labels}}],
                "containers": [{"name": "web", "image": busybox_image, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", "mkdir -p /www && echo upgrade-web > /www/index.html "
                                            "&& exec httpd -f -p 80 -h /www"],
                                "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}}]}}},
    })
    policy.create_namespaced_pod_disruption_budget(NAMESPACE, {
        "metadata": {"name": APP}, "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}})
    core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": APP},
        "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": 80, "targetPort": 80, "nodePort": NODE_PORT}]},
    })
    wait_for("2 ready replicas", lambda: (apps.read_namespaced_deployment(APP, NAMESPACE).status.ready_replicas or 0) == 2)
    yield
    apps.delete_namespaced_deployment(APP, NAMESPACE)
    policy.delete_namespaced_pod_disruption_budget(APP, NAMESPACE)
    core.delete_namespaced_service(APP, NAMESPACE)


@pytest.fixture(scope="module")
def upgraded(core, workload):
    assert set(kubelet_versions(core).values()) == {PREVIOUS}, kubelet_versions(core)
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    addresses = [runner.get_variables(name)["ansible_host"] for name in sorted(runner.get_hosts("u7s_cluster"))]
    prober = Prober(addresses)
    prober.start()
    time.sleep(5)
    started = time.monotonic()
    result = run_playbook("upgrade.yml", "-e", f"u7s_kubernetes_version={CURRENT}", timeout=3000,
                          env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "TZ": "UTC"})
    seconds = time.monotonic() - started
    time.sleep(5)
    prober.stop.set()
    prober.join()
    print(f"\nupgrade {PREVIOUS} -> {CURRENT}: {seconds:.0f} s for {len(addresses)} nodes "
          f"({seconds / len(addresses):.0f} s per node); HTTP requests: {prober.requests}, "
          f"failed on the first host tried: {prober.first_try_failed}, failed on every host: {prober.failed}")
    for line in failure_windows(prober.failures, result.stdout):
        print("  no host answered from " + line)
    # profile_tasks' slowest tasks follow the recap: where the upgrade spends its time.
    print("\n".join(result.stdout[result.stdout.rfind("PLAY RECAP"):].splitlines()[:45]))
    return {"result": result, "prober": prober, "seconds": seconds}


def test_the_upgrade_runs(upgraded):
    result = upgraded["result"]
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_every_node_runs_the_new_version(upgraded, core):
    wait_for("every node Ready", lambda: all_ready(core))
    assert set(kubelet_versions(core).values()) == {CURRENT}, kubelet_versions(core)
    apiserver = [pod for pod in core.list_namespaced_pod("kube-system").items
                 if pod.metadata.name.startswith("kube-apiserver-")]
    assert apiserver and {pod.spec.containers[0].image.rsplit(":", 1)[1] for pod in apiserver} == {CURRENT}


def test_the_workload_kept_answering(upgraded):
    prober = upgraded["prober"]
    assert prober.requests > 100
    assert prober.failed == 0, f"{prober.failed} of {prober.requests} requests found no host answering"


def test_a_second_run_changes_nothing(upgraded):
    result = run_playbook("upgrade.yml", "-e", f"u7s_kubernetes_version={CURRENT}")
    assert result.returncode == 0, result.stdout[-5000:]
    hosts = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("u7s_cluster")
    assert {host: counts["changed"] for host, counts in recap(result.stdout).items()} == dict.fromkeys(hosts, 0)


def test_a_downgrade_is_refused_before_any_change(upgraded, core):
    result = run_playbook("upgrade.yml", "-e", f"u7s_kubernetes_version={PREVIOUS}")
    assert result.returncode != 0
    assert "a downgrade is not supported" in " ".join((result.stdout + result.stderr).split())
    assert all(counts["changed"] == 0 for counts in recap(result.stdout).values())
    assert set(kubelet_versions(core).values()) == {CURRENT}
