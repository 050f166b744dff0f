# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Several control planes: the kubeadm configurations rendered from the real templates (one control plane
as before several control planes (fixtures/single-control-plane), three with the HA fields), and upgrade.yml's order of the control planes.

The end-to-end check on the test bed: molecule/tests/test_zz_ha.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster_inventory import cluster_groups, plan, records_of
from rendering import (
    REPO,
    conditions_failed,
    engine_session,
    render,
    render_role_template,
    role_variables,
    task_named,
    template,
)

FOUR = ("host1", "host2", "host3", "host4")
JOIN = {"api_server_endpoint": "u7s-apiserver:6443", "token": "abcdef.0123456789abcdef",
        "ca_cert_hashes": ["sha256:" + "7f" * 32]}
KEY = "0123456789abcdef" * 4


def facts_of(host: str, control_planes: int, names=FOUR) -> dict:
    """What the kubeadm role sees on HOST of NAMES whose first CONTROL_PLANES hosts are control planes."""
    result = plan(records_of(names), cluster_groups(names, control_plane=list(names[:control_planes])))
    assert result["problems"] == [], result["problems"]
    session = engine_session()
    describe = task_named("node", "describe.yml", "Describe the node")["ansible.builtin.set_fact"]["node_facts"]
    hostvars = {}
    for name in names:
        node_vars = role_variables("node", facts={
            "inventory_hostname": name, "settings_node": result["hosts"][name], "rootless_runtime_session": session})
        hostvars[name] = {"settings_node": result["hosts"][name], "node_facts": template(describe, node_vars),
                          "kubeadm_certificate_key": KEY}
    return role_variables("kubeadm", facts={
        "groups": cluster_groups(names, control_plane=list(names[:control_planes])), "hostvars": hostvars,
        "inventory_hostname": host, "ansible_play_hosts": list(names), "settings_plan": result,
        "rootless_runtime_session": session, **hostvars[host]})


# The files as they were before several control planes (commit 7ab25ff).
SINGLE = Path(__file__).parent / "fixtures" / "single-control-plane"


@pytest.mark.parametrize(("name", "host", "extra"), [
    ("kubeadm-init.yaml.j2", "host1", {}),
    ("kubeadm-join.yaml.j2", "host2", {"kubeadm_join": JOIN}),
])
def test_one_control_plane_renders_as_before(name, host, extra):
    before = (SINGLE / name).read_text()
    variables = {**facts_of(host, 1), **extra}
    assert render_role_template("kubeadm", name, variables) == render(before, variables)


def documents(name: str, variables: dict) -> list:
    return [document for document in yaml.safe_load_all(render_role_template("kubeadm", name, variables)) if document]


def test_three_control_planes_init_advertises_the_host_and_shares_the_endpoint():
    variables = facts_of("host1", 3)
    init, cluster = documents("kubeadm-init.yaml.j2", variables)[:2]
    assert init["localAPIEndpoint"]["advertiseAddress"] == "192.0.2.11"
    assert cluster["controlPlaneEndpoint"] == "u7s-apiserver:6443"
    assert cluster["apiServer"]["certSANs"] == ["localhost", "127.0.0.1", "u7s-apiserver"]
    assert "advertise-address" not in [arg["name"] for arg in cluster["apiServer"]["extraArgs"]]
    etcd = {arg["name"]: arg["value"] for arg in cluster["etcd"]["local"]["extraArgs"]}
    assert etcd == {"listen-client-urls": "https://0.0.0.0:2379", "listen-peer-urls": "https://0.0.0.0:2380",
                    "peer-skip-client-san-verification": "true"}
    # Nothing of one node's own in the shared configuration.
    assert "10.100.0.2" not in yaml.safe_dump(cluster)


def test_three_control_planes_join_a_control_plane_with_the_key_and_the_taint():
    variables = {**facts_of("host2", 3), "kubeadm_join": JOIN, "kubeadm_join_control_plane": True}
    (join,) = documents("kubeadm-join.yaml.j2", variables)
    assert join["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "192.0.2.12", "bindPort": 6443},
                                    "certificateKey": KEY}
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "u7s-apiserver:6443"
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in join["nodeRegistration"]["taints"]


def test_three_control_planes_join_a_worker_as_before():
    variables = {**facts_of("host4", 3), "kubeadm_join": JOIN}
    (join,) = documents("kubeadm-join.yaml.j2", variables)
    assert "controlPlane" not in join
    assert all(taint["key"] != "node-role.kubernetes.io/control-plane" for taint in join["nodeRegistration"]["taints"])


# --- upgrade.yml: the init host first, then each other control plane, each with an etcd health check ----------

def playbook(name: str) -> list:
    return yaml.safe_load((REPO / "playbooks" / name).read_text())


def test_upgrade_runs_the_init_host_then_the_other_control_planes_one_at_a_time_then_the_workers():
    plays = {play["name"]: play for play in playbook("upgrade.yml")}
    names = list(plays)
    init = plays["Upgrade the control plane"]
    others = plays["Upgrade the other control planes, one at a time (several control planes)"]
    workers = plays["Upgrade the other hosts, one at a time"]
    assert names.index(init["name"]) < names.index(others["name"]) < names.index(workers["name"])
    assert init["hosts"] == "u7s_upgrade_init:&u7s_upgrade_due"
    assert others["hosts"] == "u7s_upgrade_control_plane:&u7s_upgrade_due" and others["serial"] == 1
    assert init["tasks"] == others["tasks"] == workers["tasks"]
    assert init["any_errors_fatal"] is others["any_errors_fatal"] is True


@pytest.mark.parametrize(("host", "group"), [("host1", "u7s_upgrade_init"), ("host2", "u7s_upgrade_control_plane"),
                                             ("host4", None)])
def test_upgrade_groups_the_control_planes(host, group):
    check = playbook("upgrade.yml")[0]
    (task,) = [task for task in check["tasks"] if task["name"] == "Group the control planes (the init host, the others)"]
    variables = facts_of(host, 3)
    if group is None:
        assert conditions_failed([task["when"]], variables) != []
    else:
        assert conditions_failed([task["when"]], variables) == []
        assert template(task["ansible.builtin.group_by"]["key"], variables) == group


@pytest.mark.parametrize("control_planes", [1, 3])
@pytest.mark.parametrize("host", ["host1", "host2", "host4"])
def test_which_upgrade_command_runs_where(control_planes, host):
    """apply on the init host; upgrade node in the running node of another control plane; a worker's after its
    recreation; the etcd health check only with several control planes, on a control plane."""
    variables = facts_of(host, control_planes)
    control_plane = host in ["host1", "host2", "host3"][:control_planes]

    def runs(file: str, name: str, phase: str) -> bool:
        task = task_named("kubeadm", file, name)
        when = task["when"] if isinstance(task["when"], list) else [task["when"]]
        return conditions_failed(when, {**variables, "kubeadm_upgrade_phase": phase}) == []

    assert runs("upgrade.yml", "Upgrade the control plane in the running node", "apply") is control_plane
    assert runs("upgrade.yml", "Upgrade this node's kubelet configuration in the new node", "node") is not control_plane
    assert runs("upgrade.yml", "Check every etcd member after this control plane's upgrade", "etcd_health") is (
        control_plane and control_planes > 1)
    if control_plane:
        assert runs("upgrade-apply.yml", "Run kubeadm upgrade apply", "apply") is (host == "host1")
        assert runs("upgrade-apply.yml", "Run kubeadm upgrade node (another control plane)", "apply") is (host != "host1")


def test_the_single_control_plane_upgrade_tasks_are_mains_but_for_the_health_check():
    before = {play["name"]: play for play in yaml.safe_load((SINGLE / "upgrade.yml").read_text())}[
        "Upgrade the control plane"]["tasks"]
    after = {play["name"]: play for play in playbook("upgrade.yml")}["Upgrade the control plane"]["tasks"]
    # The drained-by mark moved into the kubeadm role's drain entry point (kubeadm_drained_by), whose
    # defaults the playbook's own task could not see (u7s_kubeconfig).
    moved = "Mark the node as drained by the upgrade"
    assert [task["name"] for task in after[:-1]] == [task["name"] for task in before if task["name"] != moved]
    assert next(task for task in after if task["name"] == "Drain the node")["vars"] == {"kubeadm_drained_by": "upgrade"}
    assert after[-1]["vars"] == {"kubeadm_upgrade_phase": "etcd_health"}
    variables = facts_of("host1", 1)
    assert conditions_failed([after[-1]["when"]], variables) != []  # skipped with one control plane
    assert evaluate_when(after[0]["when"], variables) == evaluate_when(before[0]["when"], variables)


def evaluate_when(when: str, variables: dict) -> bool:
    return conditions_failed([when], variables) == []
