# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The kubeadm role's configuration files, rendered from the real templates and read back as YAML."""

from __future__ import annotations

import pytest

from cluster_inventory import plan_of
from rendering import (
    role_variables,
    conditions_failed,
    engine_session,
    evaluate,
    extra_args,
    inventory_vars_of_test_bed,
    kubeadm_init_config as init_config,
    load_tasks,
    render_documents,
    render_role_template,
    role_on_host,
    task_named,
    template,
    versions_env,
)

# host1 (192.0.2.11) is the control-plane host; host2 (192.0.2.12) joins. The plan gives
# them the node subnets 10.100.0.0/24 and 10.100.1.0/24, so the node IPs .2 of each.
HOST1 = {"name": "u7s-host1", "host_address": "192.0.2.11", "internal_ip": "10.100.0.2"}

# What the join_token module returns (module results are data, not templates).
JOIN = {
    "api_server_endpoint": "192.0.2.11:6443",
    "token": "abcdef.0123456789abcdef",
    "ca_cert_hashes": ["sha256:" + "7f" * 32],
}
PENDING_TAINT = {"key": "u7s.cluster/external-ip-pending", "effect": "NoExecute"}
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def kubeadm_variables(inventory: dict | None = None, host: str = "host1", **facts) -> dict:
    """What the role sees on HOST of the two-host inventory, after the settings check."""
    return role_on_host("kubeadm", inventory, host, **facts)


def join_config(inventory: dict | None = None, join: dict | None = None) -> dict:
    documents = render_documents("kubeadm", "kubeadm-join.yaml.j2",
                                 kubeadm_variables(inventory, "host2", kubeadm_join=join or JOIN))
    assert len(documents) == 1
    return documents[0]


# --- kubeadm-init.yaml: product defaults (cgroup v2 hosts) ----------------------------------

def test_the_two_host_inventory_is_planned_as_these_tests_expect():
    assert kubeadm_variables()["node_facts"] == {
        **HOST1, "container": "u7s-node", "config_dir": "/home/u7s/.config/u7s/node", "config_mount": "/u7s"}
    assert kubeadm_variables(host="host2")["node_facts"]["internal_ip"] == "10.100.1.2"


def test_init_has_the_four_kubeadm_documents():
    config = init_config()
    assert {kind: document["apiVersion"] for kind, document in config.items()} == {
        "InitConfiguration": "kubeadm.k8s.io/v1beta4",
        "ClusterConfiguration": "kubeadm.k8s.io/v1beta4",
        "KubeletConfiguration": "kubelet.config.k8s.io/v1beta1",
        "KubeProxyConfiguration": "kubeproxy.config.k8s.io/v1alpha1",
    }


def test_init_is_marked_managed():
    text = render_role_template("kubeadm", "kubeadm-init.yaml.j2", kubeadm_variables())
    assert text.startswith("# Managed by Ansible\n")


def test_kubelet_defaults_are_for_rootless_cgroup_v2_hosts():
    kubelet = init_config()["KubeletConfiguration"]
    assert kubelet == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "port": 10250,
        "failSwapOn": False,
        "featureGates": {"KubeletInUserNamespace": True},
    }
    # cgroup v1 is refused by default from Kubernetes 1.35 on; the product does not loosen that.
    assert "failCgroupV1" not in kubelet


def test_init_registration_defaults():
    init = init_config()["InitConfiguration"]
    registration = init["nodeRegistration"]
    assert registration["name"] == "u7s-host1"
    assert registration["taints"] == [CONTROL_PLANE_TAINT, PENDING_TAINT]
    assert "ignorePreflightErrors" not in registration


@pytest.mark.parametrize(("ttl", "rendered"), [({}, "3600s"), ({"kubeadm_join_token_ttl": "30m"}, "1800s"),
                                               ({"kubeadm_join_token_ttl": 7200}, "7200s")])
def test_init_creates_its_one_token_with_the_configured_lifetime(ttl, rendered):
    """kubeadm's default token lives 24 h; the collection's lives kubeadm_join_token_ttl."""
    tokens = init_config(ttl)["InitConfiguration"]["bootstrapTokens"]
    assert tokens == [{"ttl": rendered, "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                       "usages": ["signing", "authentication"]}]


def test_local_api_endpoint_is_the_node_containers_own_address():
    """etcd binds localAPIEndpoint.advertiseAddress inside the node, where the host address does not exist."""
    endpoint = init_config()["InitConfiguration"]["localAPIEndpoint"]
    assert endpoint == {"advertiseAddress": "10.100.0.2", "bindPort": 6443}
    assert endpoint["advertiseAddress"] != HOST1["host_address"]


def test_cluster_configuration_defaults():
    cluster = init_config()["ClusterConfiguration"]
    assert cluster["kubernetesVersion"] == versions_env()["K8S_VERSION"]
    assert cluster["controlPlaneEndpoint"] == "192.0.2.11:6443"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/16",
                                     "dnsDomain": "cluster.local"}


def test_api_server_advertises_the_host_and_reaches_kubelets_by_external_ip():
    api_server = init_config()["ClusterConfiguration"]["apiServer"]
    assert extra_args(api_server["extraArgs"]) == {
        "advertise-address": "192.0.2.11",
        "etcd-servers": "https://127.0.0.1:2379",
        "kubelet-preferred-address-types": "ExternalIP",
    }
    assert api_server["certSANs"] == ["localhost", "127.0.0.1", "u7s-host1", "192.0.2.11"]


def test_controller_manager_leaves_node_addresses_to_the_collection():
    cluster = init_config()["ClusterConfiguration"]
    assert extra_args(cluster["controllerManager"]["extraArgs"]) == {"cloud-provider": "external"}


def test_etcd_listens_on_loopback_and_the_internal_ip():
    etcd = extra_args(init_config()["ClusterConfiguration"]["etcd"]["local"]["extraArgs"])
    assert etcd["listen-client-urls"].split(",") == ["https://127.0.0.1:2379", "https://10.100.0.2:2379"]
    assert etcd["advertise-client-urls"] == "https://10.100.0.2:2379"
    assert HOST1["host_address"] not in str(etcd)


def test_kube_proxy_leaves_conntrack_sysctls_alone():
    proxy = init_config()["KubeProxyConfiguration"]
    assert proxy["mode"] == "iptables"
    assert proxy["conntrack"] == {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"}


# --- kubeadm-init.yaml: the test bed (cgroup v1 machine) ---------------------------------------

def test_test_bed_kubelet_runs_on_cgroup_v1():
    kubelet = init_config(inventory_vars_of_test_bed())["KubeletConfiguration"]
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["failCgroupV1"] is False
    # u7s_kubelet_config is merged over the collection's settings, not in their place.
    assert kubelet["featureGates"] == {"KubeletInUserNamespace": True}
    assert kubelet["failSwapOn"] is False
    assert kubelet["port"] == 10250


def test_test_bed_skips_system_verification():
    registration = init_config(inventory_vars_of_test_bed())["InitConfiguration"]["nodeRegistration"]
    assert registration["ignorePreflightErrors"] == ["SystemVerification"]
    assert registration["taints"] == [CONTROL_PLANE_TAINT, PENDING_TAINT]


def test_kubelet_config_merges_recursively():
    kubelet = init_config({"u7s_kubelet_config": {"featureGates": {"NodeSwap": True}, "maxPods": 50}})[
        "KubeletConfiguration"]
    assert kubelet["featureGates"] == {"KubeletInUserNamespace": True, "NodeSwap": True}
    assert kubelet["maxPods"] == 50
    assert kubelet["cgroupDriver"] == "systemd"


def test_cgroup_driver_from_the_inventory():
    assert init_config({"u7s_cgroup_driver": "cgroupfs"})["KubeletConfiguration"]["cgroupDriver"] == "cgroupfs"


def test_the_role_variable_of_earlier_releases_is_refused_not_ignored():
    """kubeadm_cgroup_driver no longer sets anything: the settings check says what replaced it."""
    (problem,) = plan_of({"kubeadm_cgroup_driver": "cgroupfs"})["problems"]
    assert "kubeadm_cgroup_driver is set, but the collection no longer reads it" in problem
    assert "Fix: rename it to u7s_cgroup_driver" in problem


# --- kubeadm-init.yaml: another user's ports, an endpoint of its own ------------------------

CUSTOM_PORTS = {"u7s_port_apiserver": 16443, "u7s_port_etcd": 12379, "u7s_port_kubelet": 20250}


def test_custom_ports_flow_everywhere():
    config = init_config(CUSTOM_PORTS)
    cluster = config["ClusterConfiguration"]
    assert config["InitConfiguration"]["localAPIEndpoint"] == {"advertiseAddress": "10.100.0.2", "bindPort": 16443}
    assert cluster["controlPlaneEndpoint"] == "192.0.2.11:16443"
    assert extra_args(cluster["apiServer"]["extraArgs"])["etcd-servers"] == "https://127.0.0.1:12379"
    etcd = extra_args(cluster["etcd"]["local"]["extraArgs"])
    assert etcd["listen-client-urls"].split(",") == ["https://127.0.0.1:12379", "https://10.100.0.2:12379"]
    assert etcd["advertise-client-urls"] == "https://10.100.0.2:12379"
    kubelet = config["KubeletConfiguration"]
    assert kubelet["port"] == 20250 and isinstance(kubelet["port"], int)


def test_ports_given_as_strings_render_the_same():
    """Inventories (INI, extra vars) often carry ports as strings."""
    as_strings = {name: str(port) for name, port in CUSTOM_PORTS.items()}
    assert init_config(as_strings) == init_config(CUSTOM_PORTS)


def test_custom_cidrs():
    cluster = init_config({"u7s_pod_cidr": "10.32.0.0/16", "u7s_service_cidr": "10.33.0.0/16"})["ClusterConfiguration"]
    assert cluster["networking"]["podSubnet"] == "10.32.0.0/16"
    assert cluster["networking"]["serviceSubnet"] == "10.33.0.0/16"


@pytest.mark.parametrize(("endpoint", "san"), [
    ("cp.example.org:16443", "cp.example.org"),
    ("198.51.100.7:6443", "198.51.100.7"),
])
def test_control_plane_endpoint_override_is_a_san(endpoint, san):
    cluster = init_config({**CUSTOM_PORTS, "u7s_control_plane_endpoint": endpoint})["ClusterConfiguration"]
    assert cluster["controlPlaneEndpoint"] == endpoint
    assert cluster["apiServer"]["certSANs"] == ["localhost", "127.0.0.1", "u7s-host1", "192.0.2.11", san]


# --- kubeadm-join.yaml ---------------------------------------------------------------------

def test_join_discovers_the_cluster_by_token_and_ca_pin():
    join = join_config()
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert join["kind"] == "JoinConfiguration"
    assert join["discovery"] == {"bootstrapToken": {
        "apiServerEndpoint": "192.0.2.11:6443",
        "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:" + "7f" * 32],
    }}


def test_join_registers_the_worker_with_the_pending_taint_only():
    registration = join_config()["nodeRegistration"]
    assert registration["name"] == "u7s-host2"
    assert registration["taints"] == [PENDING_TAINT]
    assert "ignorePreflightErrors" not in registration


def test_join_takes_every_ca_pin():
    hashes = ["sha256:" + "01" * 32, "sha256:" + "ab" * 32]
    join = join_config(join={**JOIN, "ca_cert_hashes": hashes})
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == hashes


def test_test_bed_join_skips_system_verification():
    registration = join_config(inventory_vars_of_test_bed())["nodeRegistration"]
    assert registration["ignorePreflightErrors"] == ["SystemVerification"]
    assert registration["taints"] == [PENDING_TAINT]


def test_pending_taint_is_cleared_by_the_external_ip_role():
    """New nodes wait under the kubeadm role's taint until external_ip has set their addresses and lifts it."""
    assert evaluate("u7s_registration_taint", kubeadm_variables()) == PENDING_TAINT
    cleared = evaluate("external_ip_taints_cleared", role_variables("external_ip"))
    assert PENDING_TAINT["key"] in cleared
    task = task_named("external_ip", "main.yml", "Set the nodes' addresses from their hosts")
    assert task["u7s.cluster.node_addresses"]["taints_to_remove"] == "{{ external_ip_taints_cleared }}"


# --- kubectl.sh ------------------------------------------------------------------------------

def test_kubectl_wrapper_for_docker():
    """The wrapper exports the engine session's environment and runs the session's engine CLI."""
    docker = render_role_template("kubeadm", "kubectl.sh.j2", kubeadm_variables())
    assert docker.startswith("#!/bin/sh\n# Managed by Ansible\n")
    assert "export DOCKER_HOST=unix:///run/user/1001/docker.sock\n" in docker
    assert "export XDG_RUNTIME_DIR=/run/user/1001\n" in docker
    assert docker.rstrip().endswith('exec docker exec -i $tty u7s-node kubectl "$@"')


def test_kubectl_wrapper_for_podman():
    podman = render_role_template("kubeadm", "kubectl.sh.j2",
                                  kubeadm_variables({"u7s_engine": "podman", "node_container_name": "n1"}))
    assert "DOCKER_HOST" not in podman
    assert "export XDG_RUNTIME_DIR=/run/user/1001\n" in podman
    assert podman.rstrip().endswith('exec podman exec -i $tty n1 kubectl "$@"')


def test_kubectl_wrapper_exports_exactly_the_sessions_environment():
    session = {**engine_session(), "environment": {"A": "1", "B": "/x"}, "cli": "nerdctl"}
    wrapper = render_role_template("kubeadm", "kubectl.sh.j2", kubeadm_variables(rootless_runtime_session=session))
    assert [line for line in wrapper.splitlines() if line.startswith("export ")] == ["export A=1", "export B=/x"]
    assert 'exec nerdctl exec -i $tty u7s-node kubectl "$@"' in wrapper


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_commands_run_in_the_node_as_the_cluster_user_through_the_session(engine):
    """exec.yml picks the engine's task file from the session; it runs as the session's user with its environment."""
    variables = kubeadm_variables({"u7s_engine": engine}, kubeadm_exec_argv=["true"])
    (dispatch,) = [task for task in load_tasks("kubeadm", "exec.yml") if "ansible.builtin.include_tasks" in task]
    assert template(dispatch["ansible.builtin.include_tasks"], variables) == "exec-%s.yml" % engine
    (task,) = load_tasks("kubeadm", "exec-%s.yml" % engine)
    assert template(task["become_user"], variables) == "u7s"
    assert template(task["environment"], variables) == engine_session({"u7s_engine": engine})["environment"]
    module = task["community.docker.docker_container_exec" if engine == "docker"
                  else "containers.podman.podman_container_exec"]
    assert template(module["container" if engine == "docker" else "name"], variables) == "u7s-node"


def test_nerdctl_runs_commands_in_the_node_by_its_full_path():
    variables = kubeadm_variables({"u7s_engine": "nerdctl"}, kubeadm_exec_argv=["kubeadm", "version"])
    (task,) = load_tasks("kubeadm", "exec-nerdctl.yml")
    assert template(task["become_user"], variables) == "u7s"
    assert template(task["environment"], variables) == engine_session({"u7s_engine": "nerdctl"})["environment"]
    assert template(task["ansible.builtin.command"]["argv"], variables) == [
        "/usr/local/bin/nerdctl", "exec", "u7s-node", "kubeadm", "version"]


# --- kubeadm's own options: the preflight's asserts, evaluated ------------------------------

def preflight_refusal(inventory: dict, task_name: str = "Refuse join token lifetimes kubeadm or the joins cannot use"):
    """The first condition of the preflight task that INVENTORY fails (None when it passes)."""
    task = task_named("kubeadm", "preflight.yml", task_name)
    variables = {**kubeadm_variables(inventory), **task.get("vars", {})}
    failed = conditions_failed(task["ansible.builtin.assert"]["that"], variables)
    return failed[0] if failed else None


@pytest.mark.parametrize("inventory", [{}, inventory_vars_of_test_bed(),
                                       {"kubeadm_join_token_ttl": "24h", "kubeadm_join_token_min_remaining": "23h59m"},
                                       {"kubeadm_join_token_ttl": 600, "kubeadm_join_token_min_remaining": "0"},
                                       {"kubeadm_join_token_ttl": "1h30m", "kubeadm_join_token_min_remaining": "90s"}],
                         ids=["defaults", "test-bed", "a-day", "seconds", "compound"])
def test_preflight_accepts_usable_token_lifetimes(inventory):
    assert preflight_refusal(inventory) is None


@pytest.mark.parametrize(("inventory", "condition"), [
    ({"kubeadm_join_token_ttl": "1d"}, "kubeadm_join_token_ttl | string is match(kubeadm_duration_pattern)"),
    ({"kubeadm_join_token_ttl": "10 m"}, "kubeadm_join_token_ttl | string is match(kubeadm_duration_pattern)"),
    ({"kubeadm_join_token_min_remaining": "soon"},
     "kubeadm_join_token_min_remaining | string is match(kubeadm_duration_pattern)"),
    ({"kubeadm_join_token_ttl": "0s", "kubeadm_join_token_min_remaining": "0"}, "kubeadm_ttl_seconds | int > 0"),
    ({"kubeadm_join_token_ttl": "24h1s"}, "kubeadm_ttl_seconds | int <= 86400"),
    ({"kubeadm_join_token_ttl": "25h"}, "kubeadm_ttl_seconds | int <= 86400"),
    ({"kubeadm_join_token_ttl": "10m"}, "kubeadm_min_remaining_seconds | int < kubeadm_ttl_seconds | int"),
    ({"kubeadm_join_token_ttl": "30m", "kubeadm_join_token_min_remaining": "1h"},
     "kubeadm_min_remaining_seconds | int < kubeadm_ttl_seconds | int"),
], ids=["days", "space", "min-remaining-text", "zero", "over-a-day", "25h", "equal", "shorter-than-min-remaining"])
def test_preflight_refuses_token_lifetimes_the_joins_cannot_use(inventory, condition):
    assert preflight_refusal(inventory) == condition


@pytest.mark.parametrize("errors", [
    [], ["SystemVerification"], ["Swap", "NumCPU", "Port-10250", "all"],
    # kubeadm names file checks after the path (FileAvailable-<path with / as ->), dots and '_' included.
    ["FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml"],
    ["FileContent--proc-sys-net-ipv4-ip_forward"],
], ids=["none", "one", "several", "file-check-with-a-dot", "file-check-with-an-underscore"])
def test_preflight_accepts_lists_of_kubeadm_check_names(errors):
    assert preflight_refusal({"kubeadm_ignore_preflight_errors": errors},
                             "Refuse kubeadm preflight errors that are not a list of check names") is None


@pytest.mark.parametrize(("errors", "condition"), [
    ("SystemVerification", "kubeadm_ignore_preflight_errors is not string"),
    (["System Verification"], "kubeadm_ignore_preflight_errors | select('match', '^[A-Za-z0-9._-]+$') | list | length"
                              " == kubeadm_ignore_preflight_errors | length"),
    (["all;rm -rf /"], "kubeadm_ignore_preflight_errors | select('match', '^[A-Za-z0-9._-]+$') | list | length"
                       " == kubeadm_ignore_preflight_errors | length"),
], ids=["a-string", "a-space", "shell"])
def test_preflight_refuses_preflight_errors_that_are_no_list_of_check_names(errors, condition):
    assert preflight_refusal({"kubeadm_ignore_preflight_errors": errors},
                             "Refuse kubeadm preflight errors that are not a list of check names") == condition
