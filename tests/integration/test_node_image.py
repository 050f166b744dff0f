"""The offline node image boots in the local docker engine as a Usernetes node would.

Boots ``localhost/u7s/node-base:<K8S_VERSION>`` (built by ``artifacts/images.sh
build``, see artifacts/images/README.md) the way this machine allows (no
``--privileged``: all capabilities but SYS_RESOURCE, seccomp, AppArmor and
system paths unconfined, every device, a private cgroup namespace, tmpfs
/run /run/lock /tmp, a volume for /var, a user-defined network as in Usernetes,
so Docker's embedded DNS is in play) and checks what a node needs before
``kubeadm init``: systemd, containerd, the image import unit, the pinned images,
kubeadm/kubelet versions, the sandbox image, DNS from the node and from a pod's
network namespace, the iptables backend, a pod through the CRI, and a graceful
restart after which the import finds everything present. Everything it creates
is removed at the end of the module.

The image is the one of the archive ``images.sh path`` names for this checkout
(same key, same image ID). Without a docker engine or without that archive and
image the tests skip, saying why; ``make integration`` builds the images first
and sets ``U7S_REQUIRE_IMAGES=1``, which turns those skips into failures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES_SH = REPO / "artifacts" / "images.sh"
REQUIRED = os.environ.get("U7S_REQUIRE_IMAGES") == "1"

# Run inside the node: a pod through the CRI as kubelet would start it (sandbox
# from the pause image, bridge + host-local CNI from a throwaway conf, systemd
# cgroup driver) with a busybox container ($BUSYBOX) pinging its gateway.
POD_SCRIPT = r"""
set -euo pipefail
echo '{"cniVersion": "1.0.0", "name": "smoke", "plugins": [
  {"type": "bridge", "bridge": "smoke0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.255.253.0/24"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}' >/etc/cni/net.d/99-smoke.conflist
sleep 2
echo '{"metadata": {"name": "smoke", "namespace": "default", "uid": "smoke"},
  "linux": {"cgroup_parent": "kubepods.slice"}, "log_directory": "/tmp/smoke-pod"}' >/tmp/smoke-pod.json
printf '{"metadata": {"name": "c"}, "image": {"image": "%s"}, "log_path": "c.log",
  "command": ["sh", "-c", "ping -c1 -W3 10.255.253.1 >/dev/null && echo pod-ok && sleep 60"]}' "$BUSYBOX" >/tmp/smoke-ctr.json
p=$(crictl runp /tmp/smoke-pod.json)
c=$(crictl create "$p" /tmp/smoke-ctr.json /tmp/smoke-pod.json)
crictl start "$c" >/dev/null
for _ in $(seq 10); do crictl logs "$c" 2>/dev/null | grep -q pod-ok && break; sleep 1; done
ip=$(crictl inspectp -o go-template --template '{{.status.network.ip}}' "$p")
cgroup=$(crictl exec "$c" cat /proc/self/cgroup | grep -m1 pids | cut -d: -f3)
echo "$(crictl logs "$c" 2>&1 | tail -n1), pod IP $ip, cgroup $cgroup"
crictl stopp "$p" >/dev/null
crictl rmp "$p" >/dev/null
rm -f /etc/cni/net.d/99-smoke.conflist
"""


def unavailable(reason: str) -> NoReturn:
    """Skip (nothing to test here), or fail where the images must exist."""
    if REQUIRED:
        pytest.fail(f"{reason} (U7S_REQUIRE_IMAGES=1: `make artifacts` must have built it)", pytrace=False)
    pytest.skip(reason)


def docker(*args: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed (rc={proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Archive:
    path: Path
    manifest: dict[str, Any]

    def refs(self, role: str) -> list[str]:
        return [i["ref"] for i in self.manifest["images"] if i["role"] == role]

    @property
    def node(self) -> dict[str, Any]:
        (node,) = [i for i in self.manifest["images"] if i["role"] == "node"]
        return node


@dataclass
class Node:
    """The booted node container."""

    name: str
    archive: Archive
    boot_state: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *cmd, check=False, timeout=timeout)

    def out(self, *cmd: str, timeout: float = 120) -> str:
        return self.run(*cmd, timeout=timeout).stdout.strip()

    def sh(self, script: str, timeout: float = 120) -> str:
        return self.out("sh", "-c", script, timeout=timeout)

    def unit(self, unit: str, prop: str) -> str:
        return self.out("systemctl", "show", "-p", prop, "--value", unit)

    def import_journal(self, this_boot: bool = False) -> list[str]:
        """The import unit's `imported ...` and `FAILED` lines (of all boots, or of this one)."""
        boot = ["-b"] if this_boot else []
        lines = self.out("journalctl", *boot, "-u", "u7s-import-images", "-o", "cat", "--no-pager").splitlines()
        return [line for line in lines if re.search("imported|FAILED", line)] or [""]


def wait_for(predicate, tries: int, interval: float = 2) -> bool:
    """Call predicate up to `tries` times, `interval` seconds apart, until it is true."""
    for attempt in range(tries):
        if predicate():
            return True
        if attempt + 1 < tries:
            time.sleep(interval)
    return False


@pytest.fixture(scope="module")
def archive() -> Archive:
    """The image archive of this checkout's sources (``images.sh path``), and the engine holding its node image."""
    proc = subprocess.run(["bash", str(IMAGES_SH), "path"], capture_output=True, text=True, timeout=120, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(f"`{IMAGES_SH} path` failed (rc={proc.returncode}): {proc.stderr.strip()}", pytrace=False)
    path = Path(lines[-1])
    if not (path / "manifest.json").is_file():
        unavailable(f"no image archive for the current sources at {path}; build it with `artifacts/images.sh build`")
    result = Archive(path=path, manifest=json.loads((path / "manifest.json").read_text()))
    try:
        engine = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=60)
    except FileNotFoundError:
        unavailable("no docker CLI on PATH")
    if engine.returncode != 0:
        unavailable(f"no docker engine answers: {engine.stderr.strip()}")
    ref, want = result.node["ref"], result.node["id"]
    have = docker("image", "inspect", "-f", "{{.Id}}", ref, check=False).stdout.strip()
    if have != want:
        unavailable(f"the docker engine holds {ref} as {have[7:19] or 'nothing'}, not the archive's {want[7:19]}; "
                    "load it with `artifacts/images.sh build`")
    return result


@pytest.fixture(scope="module")
def node(archive: Archive) -> Iterator[Node]:
    """The node image booted until systemd settles (running or degraded)."""
    name = f"u7s-images-smoke-{os.getpid()}"
    n = Node(name=name, archive=archive)
    try:
        docker("network", "create", name)
        docker(
            "run", "-d", "--name", name, "--hostname", name, "--network", name, "--network-alias", f"{name}-alias",
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
            "--device-cgroup-rule", "a *:* rwm", "--cgroupns=private",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "-v", f"{name}-var:/var",
            archive.node["ref"],
        )

        def settled() -> bool:
            n.boot_state = n.out("systemctl", "is-system-running")
            return n.boot_state in ("running", "degraded")

        wait_for(settled, 120)
        yield n
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", f"{name}-var", check=False)
        docker("network", "rm", name, check=False)


@pytest.fixture(scope="module")
def imported(node: Node) -> Node:
    """The node once the image import unit has finished (it runs on every boot)."""
    wait_for(lambda: node.unit("u7s-import-images", "ActiveState") != "activating", 150)
    return node


@pytest.fixture(scope="module")
def restarted(imported: Node) -> Node:
    """The node after `docker restart` (a reboot) and the import that follows it."""
    t0 = time.monotonic()
    docker("restart", "-t", "30", imported.name, timeout=120)
    imported.facts["restart_seconds"] = time.monotonic() - t0
    wait_for(lambda: imported.unit("u7s-import-images", "ActiveState") in ("active", "failed"), 60)
    return imported


def test_systemd_running(node: Node) -> None:
    failed = node.sh("systemctl --failed --no-legend --plain | awk '{print $1}' | paste -sd' ' -")
    assert node.boot_state == "running", f"systemd is {node.boot_state or 'unreachable'}; failed units: {failed}"


def test_containerd_active(node: Node) -> None:
    assert node.out("systemctl", "is-active", "containerd") == "active"


def test_image_import_succeeded(imported: Node) -> None:
    result = imported.unit("u7s-import-images", "Result")
    state = imported.out("systemctl", "is-active", "u7s-import-images")
    last = imported.import_journal()[-1]
    print(last)
    assert (result, state) == ("success", "active"), f"import unit {result}/{state}: {last}"


def test_crictl_images_pinned(imported: Node) -> None:
    """Every image kubeadm deploys, plus flannel's and busybox, pinned in containerd's k8s.io namespace."""
    kubeadm = imported.out("kubeadm", "config", "images", "list", "--kubernetes-version", imported.out("cat", "/kind/version"))
    wanted = set(kubeadm.split()) | {i["ref"] for i in imported.archive.manifest["images"] if i["role"] != "node"}
    listing = json.loads(imported.out("crictl", "images", "-o", "json") or '{"images": []}')
    pinned = {tag for image in listing["images"] if image.get("pinned") for tag in image.get("repoTags") or []}
    print(f"{len(wanted)} wanted (kubeadm + flannel + test), {len(pinned)} pinned")
    assert not wanted - pinned, f"missing from `crictl images` (pinned): {sorted(wanted - pinned)}"


def test_kubeadm_version(node: Node) -> None:
    assert node.out("kubeadm", "version", "-o", "short") == node.archive.manifest["k8s_version"]


def test_kubelet_version(node: Node) -> None:
    assert node.out("kubelet", "--version") == f"Kubernetes {node.archive.manifest['k8s_version']}"


def test_sandbox_image(node: Node) -> None:
    """containerd's sandbox image is the pause image kubeadm deploys."""
    images = node.out("kubeadm", "config", "images", "list", "--kubernetes-version", node.archive.manifest["k8s_version"])
    (pause,) = [ref for ref in images.split() if "/pause:" in ref]
    config = node.out("cat", "/etc/containerd/config.toml")
    assert f'sandbox_image = "{pause}"' in config, [line.strip() for line in config.splitlines() if "sandbox_image" in line]


def test_engine_dns(node: Node) -> None:
    """The engine's embedded DNS answers from the node and from another network namespace (as a pod's, CoreDNS's)."""
    alias = f"{node.name}-alias"  # only in Docker's DNS, not in /etc/hosts
    via_node = node.sh(f"getent ahostsv4 {alias} | awk '{{print $1; exit}}'")
    via_pod = node.sh(
        "ip netns add u7s-smoke && ip link add u7s-smoke0 type veth peer name u7s-smoke1 && "
        "ip link set u7s-smoke1 netns u7s-smoke && ip addr add 10.255.254.1/30 dev u7s-smoke0 && "
        "ip link set u7s-smoke0 up && ip -n u7s-smoke addr add 10.255.254.2/30 dev u7s-smoke1 && "
        "ip -n u7s-smoke link set u7s-smoke1 up && ip -n u7s-smoke route add default via 10.255.254.1 && "
        f"ip netns exec u7s-smoke timeout 10 getent ahostsv4 {alias} | awk '{{print $1; exit}}'; "
        "ip netns del u7s-smoke; ip link del u7s-smoke0 2>/dev/null; true"
    )
    nameservers = node.sh("grep nameserver /etc/resolv.conf | paste -sd' ' -")
    print(f"{nameservers}; {alias} = {via_node or '?'} from the node, {via_pod or '?'} from a pod netns")
    assert via_node and via_node == via_pod, f"{nameservers}; {alias} = {via_node or '?'} from the node, {via_pod or '?'} from a pod netns"


def test_iptables_backend(node: Node) -> None:
    version = node.run("iptables", "-V")
    print(version.stdout.strip())
    assert version.returncode == 0 and re.search(r"\((nf_tables|legacy)\)", version.stdout), version.stdout + version.stderr


def test_pod_via_cri(imported: Node) -> None:
    busybox = imported.archive.refs("test")[0]
    pod = docker("exec", "-i", "-e", f"BUSYBOX={busybox}", imported.name, "bash", "-s",
                 stdin=POD_SCRIPT, check=False, timeout=180)
    last = (pod.stdout.strip().splitlines() or [""])[-1]
    print(last)
    assert pod.returncode == 0 and last.startswith("pod-ok"), (pod.stdout + pod.stderr).strip()


# Last: these restart the node.
def test_restart_is_graceful(restarted: Node) -> None:
    seconds = restarted.facts["restart_seconds"]
    assert seconds < 25, f"restart (SIGRTMIN+3, systemd shutdown) took {seconds:.0f}s"


def test_import_after_restart_skips_everything(restarted: Node) -> None:
    lines = restarted.import_journal(this_boot=True)
    print(lines[-1])
    assert any("imported 0, already present" in line for line in lines), lines[-1]


# The small images artifacts/images.sh builds from Debian packages (their dependency closures):
# each program they run must find its shared libraries (an image once lacked libc6, and every
# iperf3 pod failed with "exec /usr/bin/iperf3: no such file or directory").
SMALL_IMAGE_PROGRAMS = [
    ("registry.k8s.io/kube-proxy:", "/usr/sbin/iptables-nft", "iptables v"),
    ("registry.k8s.io/kube-proxy:", "/usr/sbin/iptables-legacy", "iptables v"),
    ("registry.k8s.io/kube-proxy:", "/usr/sbin/ipset", "ipset v"),
    ("registry.k8s.io/kube-proxy:", "/usr/sbin/conntrack", "conntrack v"),
    ("registry.k8s.io/kube-proxy:", "/usr/sbin/nft", "nftables v"),
    ("ghcr.io/flannel-io/flannel:", "/usr/sbin/iptables-nft", "iptables v"),
    ("ghcr.io/flannel-io/flannel:", "/usr/sbin/ipset", "ipset v"),
    ("localhost/u7s/busybox:", "/bin/busybox", "BusyBox v"),
    ("localhost/u7s/iperf3:", "/usr/bin/iperf3", "iperf 3."),
]


@pytest.mark.parametrize(("prefix", "program", "expected"), SMALL_IMAGE_PROGRAMS,
                         ids=[f"{prefix.split('/')[-1].rstrip(':')}-{program.rsplit('/', 1)[-1]}"
                              for prefix, program, _expected in SMALL_IMAGE_PROGRAMS])
def test_the_small_images_programs_run(archive: Archive, prefix: str, program: str, expected: str) -> None:
    refs = [image["ref"] for image in archive.manifest["images"] if image["ref"].startswith(prefix)]
    assert len(refs) == 1, f"the archive holds {refs} for {prefix}"
    version_flag = "--help" if program.endswith("busybox") else "--version"
    proc = docker("run", "--rm", "--network", "none", "--entrypoint", program, refs[0], version_flag, check=False)
    output = proc.stdout + proc.stderr
    assert expected in output, f"{program} in {refs[0]} (rc={proc.returncode}): {output.strip()[:400]}"
