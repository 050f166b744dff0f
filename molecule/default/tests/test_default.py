"""What host_prereqs and rootless_runtime leave on every test-bed host."""

from __future__ import annotations

import os
import shlex

import pytest
import testinfra

USER = "u7s"
PUBLISHED_PORT = 18080


def as_user(host, command: str):
    """Run a shell command as the cluster user with its session environment."""
    uid = host.user(USER).uid
    env = f"XDG_RUNTIME_DIR=/run/user/{uid} DOCKER_HOST=unix:///run/user/{uid}/docker.sock"
    return host.run(f"sudo -u {USER} env {env} sh -c {shlex.quote(command)}")


def subid_ranges(host, path: str) -> list[tuple[str, int, int]]:
    lines = host.file(path).content_string.splitlines()
    entries = [line.split(":") for line in lines if line and not line.startswith("#")]
    return [(name, int(start), int(count)) for name, start, count in entries]


@pytest.mark.parametrize("path", ["/etc/subuid", "/etc/subgid"])
def test_one_subordinate_range_without_overlap(host, path):
    ranges = subid_ranges(host, path)
    uid = str(host.user(USER).uid)
    mine = [r for r in ranges if r[0] in (USER, uid)]
    assert len(mine) == 1, ranges
    start, count = mine[0][1:]
    assert count >= 65536
    for name, other_start, other_count in ranges:
        if (name, other_start, other_count) == mine[0]:
            continue
        assert start + count <= other_start or other_start + other_count <= start, (mine, name)


def test_cgroup_delegation_drop_in(host):
    conf = host.file("/etc/systemd/system/user@.service.d/delegate.conf")
    assert conf.user == "root"
    assert "Delegate=cpu cpuset io memory pids" in conf.content_string


def test_linger(host):
    assert host.file(f"/var/lib/systemd/linger/{USER}").exists
    assert host.run(f"loginctl show-user {USER} --property=Linger").stdout.strip() == "Linger=yes"


def test_sysctl_persisted_and_applied(host):
    assert "net.ipv4.conf.default.rp_filter=2" in host.file("/etc/sysctl.d/99-u7s.conf").content_string.replace(" ", "")
    assert host.sysctl("net.ipv4.conf.default.rp_filter") == 2


def test_modules_load_file(host):
    listed = host.file("/etc/modules-load.d/u7s.conf").content_string.split()
    for module in ("br_netfilter", "vxlan", "ip_tables", "iptable_nat", "nf_tables", "xt_MASQUERADE"):
        assert module in listed


def test_rootful_docker_disabled(host):
    assert not host.service("docker.service").is_running
    assert not host.service("docker.service").is_enabled


def test_rootless_docker_runs_as_the_user(host):
    active = as_user(host, "systemctl --user is-active docker.service")
    assert active.stdout.strip() == "active", active.stderr
    owners = host.check_output("ps -o user= -C dockerd").split()
    assert owners and set(owners) == {USER}
    options = as_user(host, "docker info --format '{{json .SecurityOptions}}'")
    assert options.rc == 0, options.stderr
    assert "name=rootless" in options.stdout


def test_docker_host_known_to_login_shells(host):
    uid = host.user(USER).uid
    out = host.check_output(f"sudo -iu {USER} sh -c 'echo $DOCKER_HOST'")
    assert out.strip() == f"unix:///run/user/{uid}/docker.sock"


def _other_host(host):
    """The other test-bed host, reached through the same inventory."""
    variables = host.ansible.get_variables()
    me = variables["inventory_hostname"]
    other = next(name for name in sorted(variables["groups"]["u7s_cluster"]) if name != me)
    return testinfra.get_host(f"ansible://{other}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def test_published_port_reachable_from_the_other_host(host):
    # An image imported offline from busybox, run by the rootless engine.
    build = as_user(
        host,
        "set -e; d=$(mktemp -d); mkdir -p $d/bin $d/www; cp /bin/busybox $d/bin/;"
        " for a in sh httpd; do ln -s busybox $d/bin/$a; done;"
        " hostname > $d/www/index.html;"
        " tar -C $d -c . | docker import - u7s-test/busybox:local >/dev/null; rm -rf $d;"
        " docker rm -f u7s-test-http >/dev/null 2>&1 || true;"
        f" docker run -d --name u7s-test-http -p {PUBLISHED_PORT}:8080 u7s-test/busybox:local"
        " httpd -f -p 8080 -h /www",
    )
    assert build.rc == 0, build.stderr
    try:
        address = host.ansible.get_variables()["ansible_host"]
        other = _other_host(host)
        fetch = other.run(
            "python3 -c 'import sys, urllib.request; "
            f"print(urllib.request.urlopen(\"http://{address}:{PUBLISHED_PORT}/\", timeout=10).read().decode())'"
        )
        assert fetch.rc == 0, fetch.stderr
        assert fetch.stdout.strip() == host.check_output("hostname")
    finally:
        as_user(host, "docker rm -f u7s-test-http")
