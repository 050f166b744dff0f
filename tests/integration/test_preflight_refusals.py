"""Bad input stops the play in preflight, and the host is left exactly as it was."""

from __future__ import annotations

import pytest

# Everything the roles would write or change, plus the package database.
WATCHED = [
    "/etc/passwd",
    "/etc/subuid",
    "/etc/subgid",
    "/etc/systemd/system/user@.service.d/delegate.conf",
    "/etc/systemd/system/u7s-cgroup-v1-chown.service",
    "/etc/modules-load.d/u7s.conf",
    "/etc/sysctl.d/99-u7s.conf",
    "/etc/apparmor.d/u7s-userns",
    "/var/lib/dpkg/status",
]


def fingerprint(host) -> str:
    files = " ".join(WATCHED)
    script = (
        f"for f in {files}; do if [ -e $f ]; then sha256sum $f; else echo absent $f; fi; done;"
        " ls -A /var/lib/systemd/linger 2>/dev/null; ls -A /home"
    )
    return host.root(script).stdout


@pytest.fixture
def refused(testbed_host, run_playbook):
    """refused(extra_vars) -> the play's output, once it has failed and left the host exactly as it was."""

    def run(extra_vars: dict) -> str:
        before = fingerprint(testbed_host)
        result = run_playbook(extra_vars)
        assert result.returncode != 0, result.stdout
        assert fingerprint(testbed_host) == before
        return result.stdout

    return run


def test_missing_user_is_refused_before_any_change(testbed_host, refused):
    output = refused({"u7s_user": "ghost", "host_prereqs_user_create": False})
    assert f"Preflight failed on {testbed_host.name}" in output
    assert "ghost" in output
    assert "host_prereqs_user_create" in output  # the fix is named


@pytest.fixture
def overlapping_user(testbed_host):
    """The cluster user exists, and another user's subuid range overlaps it."""
    testbed_host.root(
        "useradd -m u7s; useradd -m other;"
        " printf 'u7s:100000:65536\\nother:150000:65536\\n' > /etc/subuid;"
        " printf 'u7s:100000:65536\\nother:165536:65536\\n' > /etc/subgid"
    )
    yield
    testbed_host.root("userdel -r other; userdel -r u7s; : > /etc/subuid; : > /etc/subgid")


def test_overlapping_subuid_range_is_refused_before_any_change(testbed_host, refused, overlapping_user):
    output = refused({})
    assert f"Preflight failed on {testbed_host.name}" in output
    assert "/etc/subuid" in output and "other" in output


def test_nerdctl_without_engine_tools_is_refused_before_any_change(refused):
    output = refused({"u7s_engine": "nerdctl"})
    assert "rootless_runtime_nerdctl_tools_dir" in output
    assert "artifacts/engine-tools.sh" in output  # the fix is named


def test_unknown_engine_is_refused_by_the_settings_check(refused):
    output = refused({"u7s_engine": "lxc"})
    assert "u7s_engine" in output and "lxc" in output


def test_host_address_that_is_not_the_hosts_is_refused_before_any_change(refused):
    output = refused({"u7s_host_ip": "192.0.2.99"})
    assert "u7s_host_ip 192.0.2.99 is not one of its addresses" in " ".join(output.split())


def test_node_subnet_inside_the_pod_network_is_refused_before_any_change(refused):
    output = refused({"u7s_node_subnet": "10.244.5.0/24"})
    assert "10.244.5.0/24 overlaps the reserved range 10.244.0.0/16" in " ".join(output.split())


def test_renamed_variable_is_refused_with_its_new_name(refused):
    output = " ".join(refused({"node_host_ip": "172.30.0.11"}).split())
    assert "node_host_ip is set, but the collection no longer reads it" in output
    assert "rename it to u7s_host_ip" in output


def test_every_inventory_mistake_is_reported_at_once(testbed_host, refused):
    """Several mistakes of different kinds: one run names them all, each with its variable and fix."""
    output = " ".join(refused({
        "u7s_pod_cidr": "10.96.0.0/12",
        "u7s_extra_ports": [{"port": 10250, "protocol": "tcp"}, {"port": 30080, "protocol": "sctp"}],
        "u7s_dns_domain": "Cluster_Local",
        "u7s_control_plane_endpoint": "api.example.org:70000",
    }).split())
    assert "(6 problems)" in output, output
    assert "u7s_pod_cidr 10.96.0.0/12 and u7s_service_cidr 10.96.0.0/16 overlap" in output
    assert "the u7s_port_kubelet and u7s_extra_ports[0] (tcp) ports are both 10250/tcp" in output
    assert "u7s_node_subnet_pool 10.100.0.0/16 lies inside u7s_pod_cidr 10.96.0.0/12" in output
    assert f"Host {testbed_host.name}: u7s_extra_ports[1] has protocol 'sctp'" in output
    assert "u7s_dns_domain: 'Cluster_Local' is not a DNS domain" in output
    assert "u7s_control_plane_endpoint has port '70000'" in output


def test_subid_count_a_rootless_engine_cannot_use_is_refused(testbed_host, refused):
    output = " ".join(refused({"host_prereqs_subid_count": 1000}).split())
    assert f"Preflight failed on {testbed_host.name}" in output
    assert "host_prereqs_subid_count is 1000; a rootless engine needs at least 65536" in output


def test_base_image_of_another_kubernetes_version_is_refused(testbed_host, refused):
    output = " ".join(refused({"node_image_base": "localhost/u7s/node-base:v1.35.0"}).split())
    assert "carries Kubernetes v1.35.0, but u7s_kubernetes_version is v1.36.4" in output


def test_join_token_lifetime_kubeadm_cannot_use_is_refused(refused):
    output = " ".join(refused({"kubeadm_join_token_ttl": "5m", "kubeadm_join_token_min_remaining": "10m"}).split())
    assert "kubeadm_join_token_ttl (5m) must be a duration like 1h or 30m" in output


@pytest.fixture
def apiserver_port_taken(testbed_host):
    """Something of another account (root here) listens on the API server port."""
    testbed_host.root(
        "setsid python3 -c 'import socket,time; s=socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"0.0.0.0\", 6443)); "
        "s.listen(); time.sleep(3600)' >/dev/null 2>&1 < /dev/null & sleep 1"
    )
    yield
    testbed_host.root("pkill -f 'time.sleep(3600)' || true")


def test_port_held_by_another_account_is_refused_before_any_change(refused, apiserver_port_taken):
    output = refused({})
    assert "port 6443/tcp (u7s_port_apiserver) is held by root" in " ".join(output.split())
    assert "u7s_port_apiserver" in output  # the fix is named


@pytest.fixture
def running_node_state(testbed_host):
    """The cluster user's node state as the node role records it for a node created with port 6443."""
    state = ('{"subnet": "10.100.0.0/24", "node_ip": "10.100.0.2", "container": "u7s-node",'
             ' "settings": {"u7s_port_apiserver": 6443}}')
    testbed_host.root(
        "useradd -m u7s && mkdir -p /home/u7s/.local/state/u7s"
        f" && printf '%s\\n' '{state}' > /home/u7s/.local/state/u7s/node.json && chown -R u7s: /home/u7s/.local"
    )
    yield
    testbed_host.root("userdel -r u7s; : > /etc/subuid; : > /etc/subgid")


def test_a_setting_changed_under_a_running_node_is_refused(testbed_host, refused, running_node_state):
    output = " ".join(refused({"u7s_port_apiserver": 7443}).split())
    assert f"u7s_port_apiserver is 7443, but the node on host {testbed_host.name} runs with 6443" in output
    assert "Fix: set u7s_port_apiserver back to 6443" in output


@pytest.fixture
def account_in_subuid_range(testbed_host):
    """/etc/subuid gives the cluster user (not created yet) 100000-165535, where an account has its uid."""
    testbed_host.root(
        "useradd --no-create-home --uid 120000 squatter;"
        " printf 'u7s:100000:65536\\n' > /etc/subuid; : > /etc/subgid"
    )
    yield
    testbed_host.root("userdel squatter; : > /etc/subuid; : > /etc/subgid")


def test_subuid_range_over_an_account_is_refused_before_any_change(testbed_host, refused, account_in_subuid_range):
    """Issue 12, finding 7: root in the user's containers would be the account squatter."""
    output = " ".join(refused({}).split())
    assert f"Preflight failed on {testbed_host.name}" in output
    assert (f"Host {testbed_host.name}: /etc/subuid line 1 'u7s:100000:65536' gives user 'u7s' "
            "the subordinate UIDs 100000-165535") in output
    assert "the account squatter (120000)" in output
    assert "Fix: while the user runs no containers on this host, replace that line by u7s:" in output


@pytest.fixture
def cgroup_v1_handed_to_another_user(testbed_host):
    """Another user's cluster has the cgroup v1 hand-over unit (the hierarchies themselves are left alone)."""
    testbed_host.root(
        "useradd -m alice && uid=$(id -u alice) && printf '%s\\n'"
        " '[Unit]' 'Description=Hand cgroup v1 controllers to alice' '[Service]' 'Type=oneshot'"
        " \"ExecStart=/bin/chown -R $uid:$uid /sys/fs/cgroup/cpu /sys/fs/cgroup/memory\""
        " > /etc/systemd/system/u7s-cgroup-v1-chown.service"
    )
    yield
    testbed_host.root("rm -f /etc/systemd/system/u7s-cgroup-v1-chown.service; userdel -r alice")


def test_second_tenant_on_a_cgroup_v1_host_is_refused_before_any_change(
        testbed_host, refused, cgroup_v1_handed_to_another_user):
    """Issue 12, finding 8: the test bed is cgroup v1 with host_prereqs_cgroup_v1_chown; alice holds the hand-over."""
    output = " ".join(refused({}).split())
    assert f"Preflight failed on {testbed_host.name}" in output
    assert "The host uses cgroup v1, where controllers cannot be delegated" in output
    assert "/etc/systemd/system/u7s-cgroup-v1-chown.service hands them to alice" in output
    assert "u7s_user u7s would fail at kubeadm init" in output
    assert "Fix: run this cluster on other hosts, or as alice (u7s_user)" in output


@pytest.fixture
def high_unprivileged_port_start(testbed_host):
    """The host lets unprivileged processes bind ports from 7000 on only (the test bed's hosts have their own netns)."""
    before = testbed_host.root("cat /proc/sys/net/ipv4/ip_unprivileged_port_start").stdout.strip()
    testbed_host.root("sysctl -q -w net.ipv4.ip_unprivileged_port_start=7000")
    yield
    testbed_host.root(f"sysctl -q -w net.ipv4.ip_unprivileged_port_start={before}")


def test_ports_below_the_hosts_unprivileged_port_start_are_refused(testbed_host, refused, high_unprivileged_port_start):
    """Issue 12 (also): preflight reads net.ipv4.ip_unprivileged_port_start from the host."""
    output = " ".join(refused({}).split())
    # Which ports a node publishes is the settings plan's (a single control plane may not publish etcd's).
    assert f"Host {testbed_host.name}: port" in output
    assert "6443/tcp (u7s_port_apiserver)" in output
    assert "below net.ipv4.ip_unprivileged_port_start (7000) on this host" in output
    assert "Fix: give the cluster ports from 7000 on" in output
