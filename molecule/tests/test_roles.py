"""What host_prereqs and rootless_runtime leave on every test-bed host."""

from __future__ import annotations

import json
import re

import pytest
from cluster_helpers import bypass4netns_expected, bypass4netns_log

PUBLISHED_PORT = 18080


def subid_ranges(host, path: str) -> list[tuple[str, int, int]]:
    lines = host.file(path).content_string.splitlines()
    entries = [line.split(":") for line in lines if line and not line.startswith("#")]
    return [(name, int(start), int(count)) for name, start, count in entries]


@pytest.mark.parametrize("path", ["/etc/subuid", "/etc/subgid"])
def test_one_subordinate_range_without_overlap(host, cluster_user, path):
    ranges = subid_ranges(host, path)
    uid = str(host.user(cluster_user).uid)
    mine = [r for r in ranges if r[0] in (cluster_user, uid)]
    assert len(mine) == 1, ranges
    start, count = mine[0][1:]
    assert count >= 65536
    for entry in ranges:
        if entry == mine[0]:
            continue
        other_start, other_count = entry[1:]
        assert start + count <= other_start or other_start + other_count <= start, (mine, entry)


def test_cgroup_delegation_drop_in(host):
    conf = host.file("/etc/systemd/system/user@.service.d/delegate.conf")
    assert conf.user == "root"
    assert "Delegate=cpu cpuset io memory pids" in conf.content_string


def test_linger(host, cluster_user):
    assert host.file(f"/var/lib/systemd/linger/{cluster_user}").exists
    assert host.run(f"loginctl show-user {cluster_user} --property=Linger").stdout.strip() == "Linger=yes"


def test_sysctl_persisted_and_applied(host):
    persisted = host.file("/etc/sysctl.d/99-u7s.conf").content_string.replace(" ", "")
    assert "net.ipv4.conf.default.rp_filter=2" in persisted
    assert host.sysctl("net.ipv4.conf.default.rp_filter") == 2


def test_modules_load_file(host):
    listed = host.file("/etc/modules-load.d/u7s.conf").content_string.split()
    for module in ("br_netfilter", "vxlan", "ip_tables", "iptable_nat", "nf_tables", "xt_MASQUERADE"):
        assert module in listed


def test_rootful_docker_not_running(host):
    assert not host.service("docker.service").is_running
    # Disabled by rootless_runtime, or never installed (Podman).
    state = host.run("systemctl is-enabled docker.service").stdout.strip()
    assert state in ("disabled", "not-found"), state


def test_docker_runs_rootless_as_the_user(host, engine, as_user, cluster_user):
    if engine != "docker":
        pytest.skip("this scenario runs Podman")
    active = as_user("systemctl --user is-active docker.service")
    assert active.stdout.strip() == "active", active.stderr
    owners = host.check_output("ps -o user= -C dockerd").split()
    assert owners and set(owners) == {cluster_user}
    options = as_user("docker info --format '{{json .SecurityOptions}}'")
    assert options.rc == 0, options.stderr
    assert "name=rootless" in options.stdout


def test_docker_host_known_to_login_shells(host, engine, cluster_user):
    if engine != "docker":
        pytest.skip("this scenario runs Podman")
    uid = host.user(cluster_user).uid
    out = host.check_output(f"sudo -iu {cluster_user} sh -c 'echo $DOCKER_HOST'")
    assert out.strip() == f"unix:///run/user/{uid}/docker.sock"


def test_podman_runs_rootless_with_slirp4netns(host, engine, as_user):
    if engine != "podman":
        pytest.skip("this scenario runs Docker")
    info = as_user("podman info --format '{{.Host.Security.Rootless}} {{.Host.RootlessNetworkCmd}}'")
    assert info.rc == 0, info.stderr
    assert info.stdout.split() == ["true", "slirp4netns"]
    enabled = as_user("systemctl --user is-enabled podman-restart.service")
    assert enabled.stdout.strip() == "enabled", enabled.stderr
    assert not host.package("docker.io").is_installed


def test_nerdctl_runs_rootless_containerd_as_the_user(host, engine, as_user, cluster_user):
    if engine != "nerdctl":
        pytest.skip("this scenario runs Docker or Podman")
    for check in ("is-active", "is-enabled"):
        state = as_user(f"systemctl --user {check} containerd.service")
        assert state.stdout.strip() in ("active", "enabled"), state.stderr
    owners = host.check_output("ps -o user= -C containerd").split()
    assert owners and set(owners) == {cluster_user}
    info = as_user("nerdctl info --format json")
    assert info.rc == 0, info.stderr
    assert "name=rootless" in json.loads(info.stdout)["SecurityOptions"]
    assert as_user("nerdctl --version").stdout.strip() == "nerdctl version 2.2.0"
    # containerd's restart monitor starts the node again when containerd starts (after a boot);
    # nerdctl refused --restart always if containerd had no restart plugin.
    policy = as_user("nerdctl container inspect --format '{{index .Config.Labels \"containerd.io/restart.policy\"}}' u7s-node")
    assert policy.stdout.strip() == "always", policy.stderr
    # The distribution's rootful containerd is stopped.
    assert not host.service("containerd.service").is_running


def test_nerdctl_node_runs_with_bypass4netns(host, engine, as_user, hostvars):
    """u7s_bypass4netns auto (the default) or true: on with nerdctl on Linux >= 5.9 (role bypass4netns, the node's
    annotations)."""
    if engine != "nerdctl":
        pytest.skip("bypass4netns is nerdctl's")
    if not bypass4netns_expected(host, hostvars):
        pytest.skip(f"bypass4netns is off here (kernel {host.check_output('uname -r')})")
    for check in ("is-active", "is-enabled"):
        state = as_user(f"systemctl --user {check} bypass4netnsd.service")
        assert state.stdout.strip() in ("active", "enabled"), state.stderr
    assert as_user("test -S $XDG_RUNTIME_DIR/bypass4netnsd.sock").rc == 0
    native = as_user("nerdctl container inspect --mode=native u7s-node")
    assert native.rc == 0, native.stderr
    annotations = json.loads(native.stdout)[0]["Spec"]["annotations"]
    assert annotations["nerdctl/bypass4netns"] == "true"
    assert annotations["nerdctl/bypass4netns-ignore-bind"] == "true"
    ignored = json.loads(annotations["nerdctl/bypass4netns-ignore-subnets"])
    assert {"127.0.0.0/8", "10.244.0.0/16", "10.96.0.0/16"} <= set(ignored)
    # The daemon started a bypass4netns for the node (its own child, as the cluster user), and it
    # accelerates: the kubelet's connection to the API server (a host address) got a host socket.
    user = hostvars.get("u7s_user", "u7s")
    assert host.run("pgrep -u %s -x bypass4netns" % user).rc == 0
    log = bypass4netns_log(host, user)
    assert re.search(r"bypassed connect socket destAddr=[0-9.]+:6443", log), log[-2000:]
    # None of its handlers died or spun (the patched bypass4netns, artifacts/patches/).
    assert "level=fatal" not in log
    assert log.count("Error in NotifReceive") < 100


def test_published_port_reachable_from_the_other_host(host, engine, as_user, hostvars, other_host):
    # An image imported offline from busybox, run by the user's rootless engine.
    started = as_user(
        "set -e; d=$(mktemp -d); mkdir -p $d/bin $d/www; cp /bin/busybox $d/bin/;"
        " for a in sh httpd; do ln -s busybox $d/bin/$a; done;"
        " hostname > $d/www/index.html;"
        f" tar -C $d -c . | {engine} import - localhost/u7s-test-busybox:local >/dev/null; rm -rf $d;"
        f" {engine} rm -f u7s-test-http >/dev/null 2>&1 || true;"
        f" {engine} run -d --name u7s-test-http -p {PUBLISHED_PORT}:8080 localhost/u7s-test-busybox:local"
        " httpd -f -p 8080 -h /www",
    )
    assert started.rc == 0, started.stderr
    try:
        url = f"http://{hostvars['ansible_host']}:{PUBLISHED_PORT}/"
        fetched = other_host.run(
            "python3 -c 'import sys, urllib.request; "
            f"print(urllib.request.urlopen(\"{url}\", timeout=10).read().decode())'"
        )
        assert fetched.rc == 0, fetched.stderr
        assert fetched.stdout.strip() == host.check_output("hostname")
    finally:
        as_user(f"{engine} rm -f u7s-test-http")
