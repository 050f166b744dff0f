# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""node_image's pins and the Dockerfile its build mode renders (the real base cannot be pulled here)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from ansible.errors import AnsibleError

from rendering import (
    REPO,
    conditions_failed,
    evaluate,
    inventory_vars_of_test_bed,
    render_role_template,
    role_variables,
    task_named,
    trusted,
    versions_env,
)

ROLE = REPO / "roles" / "node_image"
REGISTRIES_SCRIPT = ROLE / "files" / "u7s-containerd-registries"
CONTEXT_FILES_TASK = "Copy the node's entrypoint wrapper and its helpers, the kubelet drop-in and the VXLAN checksum service"


def node_image_variables(inventory: dict | None = None, architecture: str = "x86_64") -> dict:
    return role_variables("node_image", inventory, facts={
        "ansible_facts": {"architecture": architecture, "env": {"HOME": "/root"}}, "inventory_hostname": "host1"})


def dockerfile(inventory: dict | None = None, architecture: str = "x86_64") -> str:
    return render_role_template("node_image", "Dockerfile.j2", node_image_variables(inventory, architecture))


def test_product_and_offline_bundle_run_the_same_kubernetes():
    version = versions_env()["K8S_VERSION"]
    variables = node_image_variables()
    assert evaluate("u7s_kubernetes_version", variables) == version
    assert evaluate("u7s_node_image", variables) == "localhost/u7s/node:" + version
    assert version in evaluate("node_image_kindest_digests", variables)


def test_test_bed_base_matches_the_offline_bundle():
    """The test bed's offline base is built from the bundle: same version, same tag."""
    test_bed = inventory_vars_of_test_bed()
    version = versions_env()["K8S_VERSION"]
    assert "u7s_kubernetes_version" not in test_bed  # the settings' default, which is the bundle's
    variables = node_image_variables(test_bed)
    assert evaluate("node_image_base", variables) == f"localhost/u7s/node-base:{version}"
    assert evaluate("node_image_base_ref", variables) == f"localhost/u7s/node-base:{version}"
    assert evaluate("node_image_base_version", variables) == version


def test_kindest_base_is_pinned_by_digest_to_the_same_version():
    variables = node_image_variables()
    base = evaluate("node_image_base_ref", variables)
    version = evaluate("u7s_kubernetes_version", variables)
    assert re.fullmatch(rf"docker\.io/kindest/node:{re.escape(version)}@sha256:[0-9a-f]{{64}}", base)
    assert evaluate("node_image_base_version", variables) == version


def test_build_dockerfile_has_pins_and_checksum_verification():
    variables = node_image_variables()
    text = dockerfile()
    assert text.splitlines()[0].startswith("# Managed by Ansible")
    assert f"FROM {evaluate('node_image_base_ref', variables)}\n" in text
    cni_version = variables["node_image_cni_plugins_version"]
    url = f"https://github.com/containernetworking/plugins/releases/download/{cni_version}/cni-plugins-linux-amd64-{cni_version}.tgz"
    assert f"ARG CNI_PLUGINS_URL={url}" in text
    assert f"ARG CNI_PLUGINS_SHA256={variables['node_image_cni_plugins_sha256']['amd64']}" in text
    # The download is checked before it is unpacked.
    download = text.index('curl -fsSL -o /tmp/cni-plugins.tgz "${CNI_PLUGINS_URL}"')
    check = text.index('echo "${CNI_PLUGINS_SHA256}  /tmp/cni-plugins.tgz" | sha256sum -c -')
    unpack = text.index("tar -xzf /tmp/cni-plugins.tgz")
    assert download < check < unpack
    assert 'ENTRYPOINT ["/usr/local/bin/u7s-entrypoint", "/usr/local/bin/entrypoint", "/sbin/init"]' in text
    assert f'io.u7s.kubernetes-version="{versions_env()["K8S_VERSION"]}"' in text


def test_an_offline_base_replaces_the_kindest_base():
    assert "FROM localhost/u7s/node-base:v1.36.4\n" in dockerfile({"node_image_base": "localhost/u7s/node-base:v1.36.4"})


def test_architecture_without_a_pin_is_not_rendered_silently():
    with pytest.raises(AnsibleError, match="riscv64"):
        dockerfile(architecture="riscv64")


# --- the preflight's refusals of a base, evaluated ---------------------------------------------

NO_PIN = "Refuse a base without a pin for the Kubernetes version"
OTHER_VERSION = "Refuse a base that carries another Kubernetes version"


def refuses(task_name: str, inventory: dict) -> bool:
    """Whether the preflight's fail task TASK_NAME fires for INVENTORY (all its when: conditions hold)."""
    task = task_named("node_image", "preflight.yml", task_name)
    return conditions_failed(task["when"], node_image_variables(inventory)) == []


@pytest.mark.parametrize("inventory", [
    {},
    inventory_vars_of_test_bed(),
    {"node_image_base": "localhost/u7s/node-base:v1.36.4"},
    {"node_image_base": "registry.example.org:5000/u7s/node-base:v1.36.4"},
    {"node_image_base": "registry.example.org/u7s/node-base:v1.36.4@sha256:" + "ab" * 32},
    # No tag: nothing to compare (the digest pins the content).
    {"node_image_base": "registry.example.org:5000/u7s/node-base@sha256:" + "ab" * 32},
    {"u7s_kubernetes_version": "v1.37.0", "node_image_base": "localhost/u7s/node-base:v1.37.0"},
    # Another version is fine where the base is not used.
    {"u7s_kubernetes_version": "v1.37.0", "node_image_source": "pull", "node_image_pull_ref": "r/node:v1.37.0"},
    {"u7s_kubernetes_version": "v1.37.0", "node_image_source": "archive", "node_image_archive": "/srv/node.tar"},
], ids=["defaults", "test-bed", "offline-base", "registry-port", "tag-and-digest", "digest-only", "new-version",
        "pull", "given-archive"])
def test_preflight_accepts_a_base_that_carries_the_version(inventory):
    assert not refuses(NO_PIN, inventory)
    assert not refuses(OTHER_VERSION, inventory)


@pytest.mark.parametrize("source", ["build", "archive"])
def test_preflight_refuses_a_version_without_a_kindest_pin(source):
    inventory = {"u7s_kubernetes_version": "v1.37.0", "node_image_source": source}
    assert refuses(NO_PIN, inventory)
    assert not refuses(OTHER_VERSION, inventory)


@pytest.mark.parametrize("inventory", [
    {"node_image_base": "localhost/u7s/node-base:v1.35.0"},
    {"node_image_base": "registry.example.org:5000/u7s/node-base:v1.35.0"},
    {"node_image_base": "docker.io/kindest/node:v1.35.0@sha256:" + "ab" * 32},
    {"node_image_base": "localhost/u7s/node-base:v1.36.4", "u7s_kubernetes_version": "v1.37.0"},
    {"node_image_base": "localhost/u7s/node-base:v1.35.0", "node_image_source": "archive"},
], ids=["offline-base", "registry-port", "kindest-by-digest", "version-moved-on", "archive"])
def test_preflight_refuses_a_base_tagged_with_another_version(inventory):
    assert refuses(OTHER_VERSION, inventory)
    assert not refuses(NO_PIN, inventory)


def sandboxed(script: str, root: Path) -> str:
    """The entrypoint with /etc, the cgroup mount point and the mount table moved under root."""
    cgroup = root / "sys/fs/cgroup"
    cgroup.mkdir(parents=True, exist_ok=True)
    (root / "etc/default").mkdir(parents=True, exist_ok=True)
    (cgroup / "cgroup.controllers").write_text("cpu memory\n")  # a cgroup v2 layout: nothing to unmount
    (root / "mounts").write_text("")
    return (script.replace("/etc/", f"{root}/etc/").replace("/sys/fs/cgroup", str(cgroup))
            .replace("/proc/self/mounts", str(root / "mounts"))
            .replace("/usr/local/bin/u7s-containerd-registries", "sh %s" % REGISTRIES_SCRIPT))


@pytest.mark.parametrize(("driver", "expected"), [("systemd", "true"), ("cgroupfs", "false")])
def test_entrypoint_sets_containerds_cgroup_driver(tmp_path, driver, expected):
    (tmp_path / "etc/containerd").mkdir(parents=True)
    config = tmp_path / "etc/containerd/config.toml"
    config.write_text('[plugins.cri]\n        SystemdCgroup = true\n        other = 1\n')
    script = sandboxed((ROLE / "files/u7s-entrypoint").read_text(), tmp_path)
    for _start in range(2):
        subprocess.run(["sh", "-c", script, "u7s-entrypoint", "true"],
                       env={"HOST_IP": "192.0.2.7", "U7S_CGROUP_DRIVER": driver, "PATH": "/usr/bin:/bin"}, check=True)
    assert config.read_text() == (f'[plugins.cri]\n        SystemdCgroup = {expected}\n        other = 1\n'
                                  '\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/u7s/registries"\n')


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


def test_the_node_keeps_checksum_offload_off_on_flannels_devices_only(tmp_path):
    """u7s-vxlan-checksum (a service of the node) turns the offload off where it is on, on flannel.* only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fakes = {
        "ip": "echo '7: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue'\n"
              "echo '8: flannel.4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue'\n"
              "echo '9: vxlan0: <BROADCAST,MULTICAST> mtu 1450 qdisc noop'\n",
        # flannel.1 has the offload on, flannel.4 already off.
        "ethtool": 'if [ "$1" = --show-offload ]; then\n'
                   '  if [ "$2" = flannel.1 ]; then echo "tx-checksum-ip-generic: on"; '
                   'else echo "tx-checksum-ip-generic: off"; fi\n'
                   f'else echo "$*" >> {calls}; fi\n',
        # One round of the loop, then stop it.
        "sleep": "kill -TERM $PPID\n",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    result = subprocess.run(["sh", str(ROLE / "files/u7s-vxlan-checksum")], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=30, check=False)
    assert calls.read_text() == "--offload flannel.1 tx-checksum-ip-generic off\n"
    assert "tx-checksum-ip-generic turned off on flannel.1" in result.stdout


def test_the_checksum_service_is_enabled_under_usr():
    """/etc is a volume that keeps the first image's files: the unit and its enabling link live under /usr."""
    text = dockerfile()
    assert "COPY u7s-vxlan-checksum.service /usr/lib/systemd/system/\n" in text
    assert ("ln -sf ../u7s-vxlan-checksum.service "
            "/usr/lib/systemd/system/multi-user.target.wants/u7s-vxlan-checksum.service") in text
    context = task_named("node_image", "context.yml", CONTEXT_FILES_TASK)
    copied = {item["name"] for item in context["loop"]}
    assert {"u7s-vxlan-checksum", "u7s-vxlan-checksum.service"} <= copied


# --- the node's containerd reads the registries role's hosts.toml files -----------------------------

KIND_V2 = """# explicitly use v2 config format
version = 2

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"

[plugins."io.containerd.grpc.v1.cri".registry.headers]
  X-Site = ["a"]
"""
V3 = """version = 3

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'

    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'

  [plugins.'io.containerd.transfer.v1.local']
    config_path = '/etc/containerd/certs.d'
"""
V2_EMPTY_TABLE = """version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
[plugins."io.containerd.grpc.v1.cri".registry.headers]
  X-Site = ["a"]
"""


def registry_config_path(text: str) -> str:
    plugins = tomllib.loads(text)["plugins"]
    images = plugins.get("io.containerd.cri.v1.images") or plugins["io.containerd.grpc.v1.cri"]
    return images["registry"]["config_path"]


@pytest.mark.parametrize(("name", "original"), [
    ("node-base", (REPO / "artifacts/images/node-base/etc/containerd/config.toml").read_text()),
    ("kind-v2", KIND_V2),
    ("v3", V3),
    ("v2-table-without-path", V2_EMPTY_TABLE),
], ids=["node-base", "kind-v2", "v3", "v2-table-without-path"])
def test_containerd_reads_the_registries_directory(tmp_path, name, original):
    """config_path becomes /u7s/registries, in the table of the config's version; a second start changes nothing."""
    config = tmp_path / "config.toml"
    config.write_text(original)
    subprocess.run(["sh", str(REGISTRIES_SCRIPT), str(config)], check=True)
    first = config.read_text()
    assert registry_config_path(first) == "/u7s/registries", first
    subprocess.run(["sh", str(REGISTRIES_SCRIPT), str(config)], check=True)
    assert config.read_text() == first
    # Nothing else changed: at most the table's own config_path line went, only its table and line came.
    removed = [line for line in original.splitlines() if line not in first.splitlines()]
    added = [line for line in first.splitlines() if line not in original.splitlines()]
    assert len(removed) <= 1 and all(line.strip().startswith("config_path") for line in removed), removed
    assert all("/u7s/registries" in line or line.startswith("[plugins") or not line for line in added), added
    if name == "v3":
        assert "    config_path = '/etc/containerd/certs.d'\n" in first  # the transfer plugin's own


def test_containerd_registries_leaves_a_deprecated_registry_configuration_alone(tmp_path):
    """containerd refuses config_path beside registry.mirrors: such a base keeps its own, with a warning."""
    config = tmp_path / "config.toml"
    original = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://m"]\n'
    config.write_text(original)
    result = subprocess.run(["sh", str(REGISTRIES_SCRIPT), str(config)], capture_output=True, text=True, check=True)
    assert config.read_text() == original
    assert "u7s_registries does not apply to this node" in result.stderr


def test_the_script_reads_where_the_node_sees_the_registries_directory():
    """The node role mounts its configuration directory at config_mount; the registries role writes under it."""
    describe = task_named("node", "describe.yml", "Describe the node")
    mount = describe["ansible.builtin.set_fact"]["node_facts"]["config_mount"]
    script = REGISTRIES_SCRIPT.read_text()
    assert 'dir=${2:-%s/registries}' % mount in script
    assert '/usr/local/bin/u7s-containerd-registries "$containerd_config" %s/registries' % mount in (
        ROLE / "files/u7s-entrypoint").read_text()
    assert "COPY u7s-entrypoint u7s-containerd-registries " in dockerfile()
    context = task_named("node_image", "context.yml", CONTEXT_FILES_TASK)
    assert {"name": "u7s-containerd-registries", "mode": "0755"} in context["loop"]


# --- archive: what travels to the hosts, when it is compressed, where it is decompressed ----------

ARCHIVE_ID = "sha256:" + "3f" * 32
COMPRESS = "Compress it with zstd (only when the image ID differs from the stamp's)"
DECOMPRESS = "Decompress the copy where Docker is older than 23.0 (this one is {{ node_image_docker_host.host_info.ServerVersion }})"
LOAD_BLOCK = "Load the archive where the user's engine lacks its image"


def archive_variables(controller_dir: Path, compression: str = "none", inventory: dict | None = None) -> dict:
    """The role's variables after image_archive_info read an archive of that compression."""
    info = {"compression": compression, "images": [{"id": ARCHIVE_ID, "repo_tags": []}]}
    variables = role_variables("node_image", {"node_image_source": "archive", "node_image_controller_dir": str(controller_dir),
                                              **(inventory or {})},
                               facts={"ansible_facts": {"architecture": "x86_64"}, "node_image_archive_info": info,
                                      "rootless_runtime_session": {"home": "/home/u7s", "user": "u7s", "engine": "docker"}})
    # The block's vars, templated lazily as Ansible does.
    variables.update(trusted(task_named("node_image", "archive.yml", LOAD_BLOCK)["vars"]))
    return variables


@pytest.mark.parametrize(("compressed", "stamp", "compresses"), [
    (False, None, True),
    (True, None, True),            # a copy nobody vouched for (an interrupted compression)
    (True, "sha256:" + "ab" * 32, True),  # the archive holds another image now
    (False, ARCHIVE_ID, True),      # the copy was deleted
    (True, ARCHIVE_ID, False),      # a re-run
], ids=["first-run", "no-stamp", "new-image", "copy-deleted", "re-run"])
def test_the_controller_compresses_once_per_image(tmp_path, compressed, stamp, compresses):
    variables = archive_variables(tmp_path)
    zstd_path = Path(evaluate("node_image_archive_zstd_path", variables))
    assert zstd_path == tmp_path / f"node-{evaluate('u7s_kubernetes_version', variables)}.tar.zst"
    if compressed:
        zstd_path.write_bytes(b"(zstd)")
    if stamp is not None:
        Path(evaluate("node_image_archive_zstd_stamp", variables)).write_text(stamp)
    block = task_named("node_image", "controller-archive.yml", "Compress the archive on the controller (once per image)")
    variables.update(trusted(block["vars"]))
    task = task_named("node_image", "controller-archive.yml", COMPRESS)
    forget = task_named("node_image", "controller-archive.yml", "Forget which image the old copy holds")
    # The stamp goes before a compression starts (an interrupted one then leaves none).
    assert forget["when"] == task["when"]
    assert (conditions_failed([task["when"]], variables) == []) is compresses
    assert task["ansible.builtin.command"]["argv"][:5] == ["zstd", "-q", "-f", "-T0", "-{{ node_image_archive_zstd_level }}"]


def test_an_uncompressed_archive_travels_as_zstd(tmp_path):
    variables = archive_variables(tmp_path)
    version = evaluate("u7s_kubernetes_version", variables)
    assert evaluate("node_image_shipped_path", variables) == f"{tmp_path}/node-{version}.tar.zst"
    assert evaluate("node_image_shipped_compression", variables) == "zstd"
    assert evaluate("node_image_host_copy", variables) == f"/home/u7s/.cache/u7s/node-{version}.tar.zst"
    assert evaluate("node_image_host_decompressed", variables) == f"/home/u7s/.cache/u7s/node-{version}.tar"


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz"])
def test_a_compressed_archive_travels_as_it_is(tmp_path, compression):
    variables = archive_variables(tmp_path, compression, {"node_image_archive": "/srv/node.tar.x"})
    assert evaluate("node_image_shipped_path", variables) == "/srv/node.tar.x"
    assert evaluate("node_image_shipped_compression", variables) == compression
    assert evaluate("node_image_host_decompressed", variables) == evaluate("node_image_host_copy", variables)
    block = task_named("node_image", "controller-archive.yml", "Compress the archive on the controller (once per image)")
    assert conditions_failed([block["when"]], variables) != []


@pytest.mark.parametrize(("server_version", "decompresses"), [
    ("20.10.24+dfsg1", True),   # Debian 12's docker.io
    ("20.10.12", True),
    ("23.0.0", False),
    ("26.1.5+dfsg1", False),    # Debian 13's docker.io, the test bed's
    ("28.2.2", False),
])
def test_docker_gets_zstd_decompressed_before_23(tmp_path, server_version, decompresses):
    variables = {**archive_variables(tmp_path), "node_image_docker_host": {"host_info": {"ServerVersion": server_version}}}
    task = task_named("node_image", "load-docker.yml", DECOMPRESS)
    assert (conditions_failed(task["when"], variables) == []) is decompresses
    gzip_variables = {**archive_variables(tmp_path, "gzip"), "node_image_docker_host": variables["node_image_docker_host"]}
    assert conditions_failed(task["when"], gzip_variables) != []


NO_ZSTD = "Refuse a controller without zstd"


@pytest.mark.parametrize(("inventory", "refused"), [
    ({"node_image_source": "archive", "node_image_controller_zstd": {"rc": 2, "msg": "No such file"}}, True),
    ({"node_image_source": "archive", "node_image_controller_zstd": {"rc": 0, "stdout": "zstd v1.5.4"}}, False),
    # The look-up is skipped for the other sources, and nothing is refused.
    ({"node_image_source": "build", "node_image_controller_zstd": {"skipped": True}}, False),
], ids=["archive-without-zstd", "archive-with-zstd", "build"])
def test_preflight_refuses_archive_without_zstd_on_the_controller(inventory, refused):
    assert refuses(NO_ZSTD, inventory) is refused


def test_a_base_rebuilt_under_the_same_tag_changes_the_controllers_dockerfile():
    """The controller's build writes the base's ID into the Dockerfile: a new base under the same
    tag (artifacts/images.sh rebuilds localhost/u7s/node-base:<version> in place) changes the
    context, which rebuilds the node image instead of keeping the old one."""
    inventory = {"node_image_base": "localhost/u7s/node-base:v1.36.4"}
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    variables = node_image_variables(inventory)

    def render(base_id: str) -> str:
        return render_role_template("node_image", "Dockerfile.j2", {**variables, "node_image_context_base_id": base_id})

    assert f'LABEL io.u7s.base-image-id="{old}"\n' in render(old)
    assert render(old) != render(new)
    assert "base-image-id" not in dockerfile(inventory)  # hosts that pull the base by reference
    tasks = (ROLE / "tasks" / "controller-archive.yml").read_text()
    assert "node_image_context_base_id:" in tasks and "community.docker.docker_image_info" in tasks
