"""Registry mirrors (u7s_registries): every node pulls through a site's mirror, and stops when it goes.

A test-bed host outside the inventory runs Debian's docker-registry with TLS (a CA made here) and
a password, and serves an image made here (busybox plus a label) as docker.io/library/<probe>:latest, a name no
registry this bed could reach holds. playbooks/registries.yml (hosts.yml runs the same role) runs
with the mirror in u7s_registries (TLS checked against the CA, credentials from the inventory, no
fallback: airgapped), then pods with pull policy Always run from it on every node, and a second
run changes nothing. Before, and again after a run without the mirror, the same pod cannot pull:
the mirror, not a cached image, is what served it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import pytest

from cluster_helpers import REPO, changed_tasks, run_playbook, wait_for

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")

REGISTRY_HOST = "9"
CONTAINER = f"u7s-tb-host{REGISTRY_HOST}"
PROBE_IMAGE = "docker.io/library/u7s-mirror-probe:latest"
USERNAME = "probe"
REGISTRY_SETUP = r"""
set -euo pipefail
ip=$1 password=$2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker-registry skopeo apache2-utils openssl ca-certificates >/dev/null
cd /etc/docker/registry
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=u7s-test-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$ip" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$ip" >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext \
    -out server.crt 2>/dev/null
htpasswd -Bbc htpasswd probe "$password" 2>/dev/null
cat >config.yml <<'EOF'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: :5000
  tls:
    certificate: /etc/docker/registry/server.crt
    key: /etc/docker/registry/server.key
auth:
  htpasswd:
    realm: u7s-test
    path: /etc/docker/registry/htpasswd
EOF
chown docker-registry server.key htpasswd
systemctl restart docker-registry
# skopeo reads every *.key in a cert dir as a client key: the CA alone in a directory of its own.
install -d /root/registry-ca && cp ca.crt /root/registry-ca/
skopeo copy -q --retry-times 10 --dest-cert-dir /root/registry-ca --dest-creds "probe:$password" \
    docker-archive:/var/tmp/probe.tar "docker://$ip:5000/library/u7s-mirror-probe:latest"
"""


def docker(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=900)
    assert result.returncode == 0, f"docker {args[0]} failed: {result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def mirror(busybox_image, tmp_path_factory):
    """The mirror's URL, CA file (on the controller) and password; the host goes at the end."""
    remove_registry_host()  # left by an interrupted earlier run
    added = subprocess.run([str(REPO / "testbed/testbed.sh"), "add", REGISTRY_HOST],
                           capture_output=True, text=True, check=False, timeout=600)
    assert added.returncode == 0, added.stderr[-3000:]
    entry = added.stdout
    addresses = [line.split(":", 1)[1].strip() for line in entry.splitlines() if "ansible_host:" in line]
    assert len(addresses) == 1, entry
    address = addresses[0]
    password = secrets.token_hex(12)
    directory = tmp_path_factory.mktemp("mirror")
    # An image of its own (busybox plus a label): kubelet records the credentials an image ID was
    # pulled with (KubeletEnsureSecretPulledImages), and busybox's own ID pulled through the mirror
    # would then no longer count as preloaded for the other checks' "imagePullPolicy: Never" pods
    # (measured: ErrImageNeverPull for localhost/u7s/busybox after this check).
    probe = f"localhost/u7s/mirror-probe:{secrets.token_hex(4)}"
    try:
        container = docker("create", busybox_image).stdout.strip()
        docker("commit", "--change", "LABEL io.u7s.test=registry-mirror-probe", container, probe)
        docker("rm", container)
        docker("save", "-o", str(directory / "probe.tar"), probe)
        # Not /tmp: a tmpfs on the test-bed hosts, which docker cp does not write into.
        docker("cp", str(directory / "probe.tar"), f"{CONTAINER}:/var/tmp/probe.tar")
        docker("exec", CONTAINER, "bash", "-c", REGISTRY_SETUP, "setup", address, password)
        ca = docker("exec", CONTAINER, "cat", "/etc/docker/registry/ca.crt").stdout
        (directory / "ca.crt").write_text(ca)
        yield {"url": f"https://{address}:5000", "ca_file": str(directory / "ca.crt"), "password": password,
               "directory": directory}
    finally:
        remove_registry_host()
        subprocess.run(["docker", "rmi", probe], capture_output=True, check=False)


def remove_registry_host() -> None:
    subprocess.run(["docker", "rm", "-f", "-v", CONTAINER], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", f"{CONTAINER}-home"], capture_output=True, check=False)


def registries_run(mirror, registries: dict) -> tuple[subprocess.CompletedProcess, float]:
    extra = mirror["directory"] / "registries.json"
    extra.write_text(json.dumps({"u7s_registries": registries}))
    started = time.monotonic()
    result = run_playbook("registries.yml", "-e", f"@{extra}", timeout=600)
    return result, time.monotonic() - started


def pull_probe(core, node: str) -> tuple[str, str]:
    """Run the probe image (pull policy Always) on node: ("ran", log) or ("pull failed", reason)."""
    name = f"mirror-probe-{secrets.token_hex(4)}"
    core.create_namespaced_pod("default", {
        "metadata": {"name": name},
        "spec": {"nodeName": node, "restartPolicy": "Never",
                 "containers": [{"name": "probe", "image": PROBE_IMAGE, "imagePullPolicy": "Always",
                                 "command": ["sh", "-c", "echo pulled-through-the-mirror"]}]},
    })

    def outcome():
        status = core.read_namespaced_pod(name, "default").status
        if status.phase == "Succeeded":
            return ("ran", core.read_namespaced_pod_log(name, "default"))
        for container in status.container_statuses or []:
            waiting = container.state.waiting
            if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                return ("pull failed", f"{waiting.reason}: {waiting.message}")
        return None

    try:
        return wait_for(f"pod {name} on {node} to run or fail to pull", outcome, timeout=180)
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def nodes(core) -> list[str]:
    return sorted(node.metadata.name for node in core.list_node().items)


def test_without_a_mirror_the_probe_image_cannot_be_pulled(core, mirror):
    for node in nodes(core):
        outcome, detail = pull_probe(core, node)
        assert outcome == "pull failed", (node, detail)


def test_every_node_pulls_through_the_mirror(core, mirror):
    registries = {"docker.io": {"fallback": False, "mirrors": [{
        "url": mirror["url"], "ca_file": mirror["ca_file"], "username": USERNAME, "password": mirror["password"]}]}}
    result, seconds = registries_run(mirror, registries)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(f"registries.yml adding the mirror: {seconds:.0f} s")
    assert mirror["password"] not in result.stdout, "the mirror's password is in the playbook's output"
    for node in nodes(core):
        outcome, detail = pull_probe(core, node)
        assert (outcome, detail.strip()) == ("ran", "pulled-through-the-mirror"), (node, detail)

    again, seconds = registries_run(mirror, registries)
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-2000:]
    print(f"registries.yml again: {seconds:.0f} s")
    changed = changed_tasks(again.stdout)
    assert not changed, f"a second run with the same mirror changed {changed}"


def test_removing_the_mirror_removes_it_from_every_node(core, mirror):
    result, seconds = registries_run(mirror, {})
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(f"registries.yml removing the mirror: {seconds:.0f} s")
    for node in nodes(core):
        outcome, detail = pull_probe(core, node)
        assert outcome == "pull failed", (node, detail)
