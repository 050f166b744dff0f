# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""node_image's pins and the Dockerfile its build mode renders (the real base cannot be pulled here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader

from rendering import REPO, render, trusted, versions_env

ROLE = REPO / "roles" / "node_image"


def role_variables(architecture: str = "x86_64") -> dict:
    variables: dict = {}
    loader = DataLoader()
    for path in (ROLE / "defaults/main.yml", ROLE / "vars/main.yml"):
        variables.update(trusted(loader.load_from_file(str(path))))
    variables["ansible_facts"] = {"architecture": architecture, "env": {"HOME": "/root"}}
    variables["ansible_managed"] = "Managed by Ansible"
    return variables


def test_product_and_offline_bundle_run_the_same_kubernetes():
    assert role_variables()["node_image_kubernetes_version"] == versions_env()["K8S_VERSION"]


def test_test_bed_base_matches_the_offline_bundle():
    """The test bed's offline base is built from the bundle: same version, same tag."""
    test_bed = yaml.safe_load((REPO / "inventories/testbed/group_vars/u7s_cluster.yml").read_text())
    version = versions_env()["K8S_VERSION"]
    assert test_bed.get("node_image_kubernetes_version", role_variables()["node_image_kubernetes_version"]) == version
    assert test_bed["node_image_base"] == f"localhost/u7s/node-base:{version}"


def test_kindest_base_is_pinned_by_digest_to_the_same_version():
    base = role_variables()["node_image_kindest_base"]
    version = role_variables()["node_image_kubernetes_version"]
    assert re.fullmatch(rf"docker\.io/kindest/node:{re.escape(version)}@sha256:[0-9a-f]{{64}}", base)


def test_build_dockerfile_has_pins_and_checksum_verification():
    variables = role_variables()
    dockerfile = render((ROLE / "templates/Dockerfile.j2").read_text(), variables)
    assert dockerfile.splitlines()[0].startswith("# Managed by Ansible")
    assert f"FROM {variables['node_image_kindest_base']}" in dockerfile
    cni_version = variables["node_image_cni_plugins_version"]
    url = f"https://github.com/containernetworking/plugins/releases/download/{cni_version}/cni-plugins-linux-amd64-{cni_version}.tgz"
    assert f"ARG CNI_PLUGINS_URL={url}" in dockerfile
    assert f"ARG CNI_PLUGINS_SHA256={variables['node_image_cni_plugins_sha256']['amd64']}" in dockerfile
    # The download is checked before it is unpacked.
    download = dockerfile.index('curl -fsSL -o /tmp/cni-plugins.tgz "${CNI_PLUGINS_URL}"')
    check = dockerfile.index('echo "${CNI_PLUGINS_SHA256}  /tmp/cni-plugins.tgz" | sha256sum -c -')
    unpack = dockerfile.index("tar -xzf /tmp/cni-plugins.tgz")
    assert download < check < unpack
    assert 'ENTRYPOINT ["/usr/local/bin/u7s-entrypoint", "/usr/local/bin/entrypoint", "/sbin/init"]' in dockerfile
    assert f'io.u7s.kubernetes-version="{variables["node_image_kubernetes_version"]}"' in dockerfile


def test_an_offline_base_replaces_the_kindest_base():
    variables = role_variables()
    variables["node_image_base"] = "localhost/u7s/node-base:v1.36.4"
    assert "FROM localhost/u7s/node-base:v1.36.4\n" in render((ROLE / "templates/Dockerfile.j2").read_text(), variables)


def test_architecture_without_a_pin_is_not_rendered_silently():
    variables = role_variables("riscv64")
    with pytest.raises(AnsibleError, match="riscv64"):
        render((ROLE / "templates/Dockerfile.j2").read_text(), variables)


def sandboxed(script: str, root: Path) -> str:
    """The entrypoint with /etc, the cgroup mount point and the mount table moved under root."""
    cgroup = root / "sys/fs/cgroup"
    cgroup.mkdir(parents=True, exist_ok=True)
    (root / "etc/default").mkdir(parents=True, exist_ok=True)
    (cgroup / "cgroup.controllers").write_text("cpu memory\n")  # a cgroup v2 layout: nothing to unmount
    (root / "mounts").write_text("")
    return (script.replace("/etc/", f"{root}/etc/").replace("/sys/fs/cgroup", str(cgroup))
            .replace("/proc/self/mounts", str(root / "mounts")))


@pytest.mark.parametrize(("driver", "expected"), [("systemd", "true"), ("cgroupfs", "false")])
def test_entrypoint_sets_containerds_cgroup_driver(tmp_path, driver, expected):
    (tmp_path / "etc/containerd").mkdir(parents=True)
    config = tmp_path / "etc/containerd/config.toml"
    config.write_text('[plugins.cri]\n        SystemdCgroup = true\n        other = 1\n')
    script = sandboxed((ROLE / "files/u7s-entrypoint").read_text(), tmp_path)
    for _start in range(2):
        subprocess.run(["sh", "-c", script, "u7s-entrypoint", "true"],
                       env={"HOST_IP": "192.0.2.7", "U7S_CGROUP_DRIVER": driver, "PATH": "/usr/bin:/bin"}, check=True)
    assert config.read_text() == f'[plugins.cri]\n        SystemdCgroup = {expected}\n        other = 1\n'


def test_entrypoint_refuses_an_unknown_cgroup_driver(tmp_path):
    script = sandboxed((ROLE / "files/u7s-entrypoint").read_text(), tmp_path)
    result = subprocess.run(["sh", "-c", script, "u7s-entrypoint", "true"],
                            env={"HOST_IP": "192.0.2.7", "U7S_CGROUP_DRIVER": "bogus", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "U7S_CGROUP_DRIVER must be systemd or cgroupfs" in result.stderr


def test_entrypoint_rewrites_kubelet_args_instead_of_appending(tmp_path):
    """Two starts of the node leave one set of flags (upstream appends at every start)."""
    script = (ROLE / "files/u7s-entrypoint").read_text()
    etc = tmp_path / "etc"
    (etc / "default").mkdir(parents=True)
    (etc / "default/kubelet").write_text("KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/containerd.service\n")
    script = sandboxed(script, tmp_path)
    for _start in range(2):
        subprocess.run(["sh", "-c", script, "u7s-entrypoint", "true"], env={"HOST_IP": "192.0.2.7", "PATH": "/usr/bin:/bin"}, check=True)
    assert (etc / "default/kubelet").read_text() == (
        "KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/containerd.service"
        " --cloud-provider=external --node-labels=usernetes/host-ip=192.0.2.7\n"
    )


def test_entrypoint_refuses_a_missing_host_ip(tmp_path):
    result = subprocess.run(["sh", "-c", (ROLE / "files/u7s-entrypoint").read_text(), "u7s-entrypoint", "true"],
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "HOST_IP must be set" in result.stderr
