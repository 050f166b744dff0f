"""The fleet-local registry end to end: up, loaded from the controller, the node image pulled from it.

A test-bed host outside the cluster (host8) becomes the registry host (group u7s_registry) in a copy
of molecule's inventory (its group_vars read the cluster's settings through links). registry.yml
brings the registry up and registry-load.yml loads it (the node image, the offline images and one
site image made here, busybox plus a label, so that no image ID the other checks preload is pulled);
a second run of each changes nothing. One host then loses its node image's name and site.yml, with
node_image_source=pull, pulls it back from the registry (same image ID: the node is not recreated).
A pod pulls the site image through the nodes' containerd (pull policy Always) on every node.
Finally registry-reset.yml removes it, and registries.yml with molecule's inventory takes it out of
the nodes' containerd configuration again.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from testinfra.utils.ansible_runner import AnsibleRunner

from cluster_helpers import DOCKER_SCENARIO_ONLY, REPO, pinned_version, recap, run_playbook, wait_for

client = pytest.importorskip("kubernetes.client", reason="the kubernetes Python library is a controller requirement")
pytestmark = DOCKER_SCENARIO_ONLY

REGISTRY_HOST = "host8"
CONTAINER = f"u7s-tb-{REGISTRY_HOST}"


def docker(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=900)
    assert result.returncode == 0, f"docker {args[0]} failed: {result.stderr[-3000:]}"
    return result


def remove_registry_host() -> None:
    subprocess.run(["docker", "rm", "-f", "-v", CONTAINER], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", f"{CONTAINER}-home"], capture_output=True, check=False)


def timed(playbook: str, inventory: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = run_playbook(playbook, *args, inventory=inventory, timeout=1800)
    return result, time.monotonic() - started


def changed(result: subprocess.CompletedProcess) -> dict[str, int]:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return {host: counts["changed"] for host, counts in recap(result.stdout).items()}


@pytest.fixture(scope="module")
def fleet(busybox_image, tmp_path_factory):
    """The inventory with the registry host, its extra variables and the site image's name."""
    remove_registry_host()
    added = subprocess.run([str(REPO / "testbed/testbed.sh"), "add", REGISTRY_HOST.removeprefix("host")],
                           capture_output=True, text=True, check=False, timeout=600)
    assert added.returncode == 0, added.stderr[-3000:]
    directory = tmp_path_factory.mktemp("fleet-registry")
    molecule_inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    inventory = yaml.safe_load(molecule_inventory.read_text())
    inventory["all"]["hosts"][REGISTRY_HOST] = yaml.safe_load(added.stdout)[REGISTRY_HOST]
    inventory["u7s_registry"] = {"hosts": {REGISTRY_HOST: {}}}
    group_vars = directory / "group_vars"
    group_vars.mkdir()
    for name in ("all.yml", "u7s_cluster.yml"):
        (group_vars / name).symlink_to((molecule_inventory.parent / "group_vars" / name).resolve())
    # The registry host is no cluster host: it reads the same settings (the node image's name, the firewall).
    (group_vars / "u7s_registry.yml").symlink_to((molecule_inventory.parent / "group_vars/u7s_cluster.yml").resolve())
    (directory / "hosts.yml").write_text(yaml.safe_dump(inventory))

    site_image = f"localhost/u7s/fleet-probe:{secrets.token_hex(4)}"
    container = docker("create", busybox_image).stdout.strip()
    docker("commit", "--change", "LABEL io.u7s.test=fleet-registry-probe", container, site_image)
    docker("rm", container)
    docker("save", "-o", str(directory / "site.tar"), site_image)
    offline = subprocess.run([str(REPO / "artifacts/images.sh"), "path"], capture_output=True, text=True,
                             check=True, timeout=120).stdout.strip().splitlines()[-1]
    extra = ["-e", f"u7s_registry_offline_images_dir={offline}",
             "-e", '{"u7s_registry_images": ["%s"]}' % (directory / "site.tar")]
    try:
        yield {"inventory": directory / "hosts.yml", "extra": extra, "site_image": site_image,
               "address": inventory["all"]["hosts"][REGISTRY_HOST]["ansible_host"]}
    finally:
        run_playbook("registry-reset.yml", *extra, inventory=directory / "hosts.yml", timeout=600)
        remove_registry_host()
        subprocess.run(["docker", "rmi", site_image], capture_output=True, check=False)
        # The nodes' containerd knew the registry (u7s_registries gets it from the inventory): molecule's
        # inventory, which has none, takes it out again, so the later checks start from the scenario's hosts.
        restored = run_playbook("registries.yml", timeout=600)
        assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-2000:]


def test_the_registry_comes_up_and_a_rerun_changes_nothing(fleet):
    result, seconds = timed("registry.yml", fleet["inventory"], *fleet["extra"])
    assert changed(result).get(REGISTRY_HOST), "registry.yml changed nothing on the registry host"
    print(f"registry.yml: {seconds:.0f} s")
    again, _seconds = timed("registry.yml", fleet["inventory"], *fleet["extra"])
    assert set(changed(again).values()) == {0}, changed(again)


def test_it_is_loaded_once(fleet):
    result, seconds = timed("registry-load.yml", fleet["inventory"], *fleet["extra"])
    changed(result)
    print(f"registry-load.yml: {seconds:.0f} s")
    again, seconds = timed("registry-load.yml", fleet["inventory"], *fleet["extra"])
    assert set(changed(again).values()) == {0}, changed(again)
    print(f"registry-load.yml again: {seconds:.0f} s")


def test_a_host_pulls_its_node_image_from_it(fleet, core):
    """host2's engine forgets the node image's name; site.yml (pull) gets it back, the node stays."""
    worker = "host2"
    variables = AnsibleRunner(str(fleet["inventory"])).get_variables(worker)
    node_image = f"localhost/u7s/node:{variables.get('u7s_kubernetes_version') or pinned_version('versions.env')}"
    user = variables["u7s_user"]
    before = core.read_node(f"u7s-{worker}").metadata.uid
    untag = subprocess.run(["ansible", "-i", str(fleet["inventory"]), worker, "-b", "--become-user", user,
                            "-m", "ansible.builtin.shell", "-a",
                            f"cd ~ && XDG_RUNTIME_DIR=/run/user/$(id -u) DOCKER_HOST=unix:///run/user/$(id -u)/docker.sock "
                            f"docker image rm -f {node_image}"],
                           capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert untag.returncode == 0, untag.stdout + untag.stderr
    result, seconds = timed("site.yml", fleet["inventory"], *fleet["extra"], "-e", "node_image_source=pull")
    changed(result)
    print(f"site.yml pulling the node image: {seconds:.0f} s")
    assert f"{fleet['address']}:" in result.stdout, "site.yml did not name the fleet registry"
    assert core.read_node(f"u7s-{worker}").metadata.uid == before


def test_pods_pull_a_site_image_from_it_on_every_node(fleet, core):
    name = fleet["site_image"].removeprefix("localhost/")
    image = f"{fleet['address']}:5000/{name}"
    for node in sorted(n.metadata.name for n in core.list_node().items):
        pod = f"fleet-probe-{secrets.token_hex(4)}"
        core.create_namespaced_pod("default", {
            "metadata": {"name": pod},
            "spec": {"nodeName": node, "restartPolicy": "Never",
                     "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Always",
                                     "command": ["sh", "-c", "echo from-the-fleet-registry"]}]}})
        try:
            phase = wait_for(f"{pod} on {node}", lambda: (
                core.read_namespaced_pod(pod, "default").status.phase in ("Succeeded", "Failed")
                and core.read_namespaced_pod(pod, "default").status.phase), timeout=180)
            assert phase == "Succeeded", (node, core.read_namespaced_pod(pod, "default").status)
            assert core.read_namespaced_pod_log(pod, "default").strip() == "from-the-fleet-registry"
        finally:
            core.delete_namespaced_pod(pod, "default", grace_period_seconds=0)
