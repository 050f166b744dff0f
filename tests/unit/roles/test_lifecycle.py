# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The lifecycle entry points (issue 9, items 1 and 3): reset and remove-node, what can be checked without hosts.

The end-to-end checks on the test bed: molecule/tests/test_zz_lifecycle_remove.py (remove a worker) and test_zzzz_ha_reset.py (reset).
"""

from __future__ import annotations

import re

import pytest
import yaml

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import ClusterInput, plan_cluster
from cluster_inventory import (
    CLUSTER_GROUP,
    HOSTS,
    address_of,
    cluster_groups,
    host_record,
    settings_defaults,
    settings_spec,
)
from rendering import (
    REPO,
    ROLES,
    conditions_failed,
    engine_session,
    evaluate,
    load_tasks,
    role_variables,
    task_named,
    template,
)

LIFECYCLE_SETTINGS = {"u7s_reset_hosts": False, "u7s_reset_node_image": False, "u7s_remove_node": "",
                      "u7s_drain_timeout": 300}
# playbooks/reset.yml's order: the reverse of the bring-up.
RESET_SEQUENCE = [("u7s.cluster.kubeadm", "reset"), ("u7s.cluster.node", "reset"), ("u7s.cluster.node_image", "reset"),
                  ("u7s.cluster.firewall", "reset"), ("u7s.cluster.bypass4netns", "reset"),
                  ("u7s.cluster.rootless_runtime", "reset"),
                  ("u7s.cluster.host_prereqs", "reset")]
ENGINES = ("docker", "podman", "nerdctl")


def playbook(name: str) -> list:
    return yaml.safe_load((REPO / "playbooks" / name).read_text())


def included_roles(play: dict) -> list[tuple[str, str]]:
    return [(task["ansible.builtin.include_role"]["name"], task["ansible.builtin.include_role"].get("tasks_from", "main"))
            for task in play["tasks"] if "ansible.builtin.include_role" in task]


# --- settings: declared once, in the settings role ---------------------------------------------------------

@pytest.mark.parametrize(("name", "default"), sorted(LIFECYCLE_SETTINGS.items()))
def test_the_lifecycle_settings_are_declared_once(name, default):
    assert settings_defaults()[name] == default
    assert settings_spec()[name]["default"] == default
    for role in ROLES.iterdir():
        if role.name != "settings" and (role / "defaults/main.yml").exists():
            assert name not in (yaml.safe_load((role / "defaults/main.yml").read_text()) or {}), role.name


@pytest.mark.parametrize("value", ["yes", "true", 1])
def test_a_reset_switch_that_is_no_boolean_is_refused(value):
    plan = plan_cluster(ClusterInput(CLUSTER_GROUP, cluster_groups(HOSTS), settings_spec()),
                        [host_record(name, {"u7s_reset_hosts": value}, address=address_of(index))
                         for index, name in enumerate(HOSTS)], "reset")
    assert any("u7s_reset_hosts" in problem for problem in plan["problems"]), plan["problems"]


def test_a_drain_timeout_below_a_second_is_refused():
    plan = plan_cluster(ClusterInput(CLUSTER_GROUP, cluster_groups(HOSTS), settings_spec()),
                        [host_record(name, {"u7s_drain_timeout": 0}, address=address_of(index))
                         for index, name in enumerate(HOSTS)])
    assert any("u7s_drain_timeout" in problem and "Fix:" in problem for problem in plan["problems"])


# --- the reset check: what the hosts run does not refuse a reset -------------------------------------------

def records(**changes) -> list[dict]:
    return [host_record(name, address=address_of(index), recorded="10.100.%d.0/24" % index) | changes
            for index, name in enumerate(HOSTS)]


def test_a_setting_changed_under_the_nodes_refuses_a_bring_up_but_not_a_reset():
    hosts = records(recorded_settings={"u7s_kubernetes_version": "v1.35.0"})
    model = ClusterInput(CLUSTER_GROUP, cluster_groups(HOSTS), settings_spec())
    assert any("u7s_kubernetes_version" in problem for problem in plan_cluster(model, hosts)["problems"])
    assert plan_cluster(model, hosts, "reset")["problems"] == []


def test_colliding_recorded_subnets_do_not_refuse_a_reset():
    hosts = records(recorded_subnet="10.100.0.0/24")
    model = ClusterInput(CLUSTER_GROUP, cluster_groups(HOSTS), settings_spec())
    assert plan_cluster(model, hosts)["problems"]
    assert plan_cluster(model, hosts, "reset")["problems"] == []


def test_a_limited_reset_of_a_host_without_a_node_is_not_refused():
    """reset.yml --limit host2, run twice: host2 has no state file any more, host1 is outside the run."""
    hosts = [host_record("host1", recorded=None, facts=False) | {"in_play": False},
             host_record("host2", address=address_of(1), recorded="")]
    model = ClusterInput(CLUSTER_GROUP, cluster_groups(HOSTS), settings_spec())
    assert plan_cluster(model, hosts)["problems"], "a bring-up must still refuse to allocate blindly"
    plan = plan_cluster(model, hosts, "reset")
    assert plan["problems"] == [] and plan["control_plane"] == "host1"


def test_an_unknown_purpose_is_refused():
    with pytest.raises(ValueError):
        plan_cluster(ClusterInput(CLUSTER_GROUP, cluster_groups(HOSTS), settings_spec()), records(), "scale")


# --- the playbooks -------------------------------------------------------------------------------------------

def test_reset_checks_the_inventory_first_then_resets_in_reverse_bring_up_order():
    check, workers, control_planes, init = playbook("reset.yml")
    assert check["any_errors_fatal"] is True
    assert [task["ansible.builtin.import_role"] for task in check["tasks"] if "ansible.builtin.import_role" in task] == [
        {"name": "u7s.cluster.settings", "tasks_from": "reset_check"}]
    assert check["hosts"] == "u7s_cluster"
    # Workers (in parallel), the control planes other than the init host one at a time, the init host last.
    assert [play["hosts"] for play in (workers, control_planes, init)] == [
        "u7s_reset_worker", "u7s_reset_control_plane", "u7s_reset_init"]
    assert control_planes["serial"] == 1 and "serial" not in workers
    for play in (workers, control_planes, init):
        assert included_roles(play) == RESET_SEQUENCE


@pytest.mark.parametrize(("host", "group"), [("host1", "u7s_reset_init"), ("host2", "u7s_reset_control_plane"),
                                             ("host3", "u7s_reset_control_plane"), ("host4", "u7s_reset_worker")])
def test_reset_groups_the_hosts_by_what_they_run(host, group):
    (check, *_plays) = playbook("reset.yml")
    (group_by,) = [task for task in check["tasks"] if "ansible.builtin.group_by" in task]
    plan = {"control_plane": "host1", "control_planes": ["host1", "host2", "host3"]}
    variables = role_variables("kubeadm", facts={"inventory_hostname": host, "settings_plan": plan})
    assert template(group_by["ansible.builtin.group_by"]["key"], variables).strip() == group


def test_remove_node_refuses_first_then_drains_then_resets_as_reset_does():
    refuse, quorum, remove, member, endpoint = playbook("remove-node.yml")
    assert refuse["any_errors_fatal"] is True and refuse["gather_facts"] is False
    assert included_roles(refuse) == [("u7s.cluster.kubeadm", "remove_check")]
    assert quorum["hosts"] == member["hosts"] == "u7s_remove_etcd_peers" and quorum["any_errors_fatal"] is True
    assert included_roles(quorum) == [("u7s.cluster.kubeadm", "remove_etcd_check")]
    assert remove["tasks"][0]["ansible.builtin.import_role"]["tasks_from"] == "reset_check"
    assert included_roles(remove) == [("u7s.cluster.kubeadm", "remove"), *RESET_SEQUENCE]
    assert included_roles(member) == [("u7s.cluster.kubeadm", "remove_etcd_member")]
    assert endpoint["hosts"] == "u7s_remove_stays" and "any_errors_fatal" not in endpoint
    assert included_roles(endpoint) == [("u7s.cluster.kubeadm", "remove_endpoint")]


@pytest.mark.parametrize(("role", "text"), [(role, (ROLES / role / "tasks/reset.yml").read_text())
                                            for role in ("kubeadm", "node", "node_image", "rootless_runtime",
                                                         "host_prereqs", "firewall")])
def test_no_reset_is_a_stub_any_more(role, text):
    assert "not implemented" not in text, role


@pytest.mark.parametrize("role", ["kubeadm", "node", "node_image", "rootless_runtime", "host_prereqs"])
def test_every_reset_is_documented(role):
    specs = yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())["argument_specs"]
    assert "Not implemented" not in specs["reset"]["short_description"]


@pytest.mark.parametrize(("role", "step"), [("node", "reset"), ("node_image", "reset"), ("rootless_runtime", "reset"),
                                            ("rootless_runtime", "status"), ("kubeadm", "running")])
@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_has_its_file(role, step, engine):
    assert (ROLES / role / "tasks" / f"{step}-{engine}.yml").is_file()


def test_no_role_branches_on_the_engine():
    for path in ROLES.glob("*/tasks/*.yml"):
        assert not re.search(r"engine\s*[=!]=\s*['\"]", path.read_text()), path


# --- conditions ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "task", "setting"), [
    ("host_prereqs", "Take back what the role made for the cluster user", "u7s_reset_hosts"),
    ("rootless_runtime", "Remove the collection's configuration of the engine", "u7s_reset_hosts"),
    ("node_image", "Remove the node images and the build context", "u7s_reset_node_image"),
])
@pytest.mark.parametrize("value", [False, True])
def test_what_a_switch_guards(role, task, setting, value):
    """By default (false) the host prerequisites, the engine and the node image stay."""
    when = task_named(role, "reset.yml", task)["when"]
    variables = role_variables(role, inventory={setting: value})
    assert (conditions_failed([when], variables) == []) is value


@pytest.mark.parametrize(("host", "control_planes", "run", "goes"), [
    ("host1", ["host1"], ["host1"], True),                                # one control plane: as before
    ("host1", ["host1"], ["host1", "host2"], True),
    ("host2", ["host1"], ["host2"], False),
    ("host1", ["host1", "host2", "host3"], ["host1", "host2", "host3", "host4"], True),  # the whole cluster
    ("host1", ["host1", "host2", "host3"], ["host1"], False),            # remove-node.yml, or reset --limit host1
    ("host2", ["host1", "host2", "host3"], ["host1", "host2", "host3"], False),
])
def test_the_controller_kubeconfig_goes_only_when_no_control_plane_stays(host, control_planes, run, goes):
    task = task_named("kubeadm", "reset.yml", "Remove the controller's kubeconfig with the control plane")
    assert task["delegate_to"] == "localhost" and task["become"] is False
    block = task_named("kubeadm", "reset.yml", "Remove the endpoint's block from the controller's hosts file with the cluster")
    assert block["ansible.builtin.include_tasks"] == "controller-hosts.yml"
    assert block["vars"] == {"kubeadm_controller_hosts_state": "absent"}
    (write,) = load_tasks("kubeadm", "controller-hosts.yml")
    plan = {"control_plane": "host1", "control_planes": control_planes,
            "controller_hosts_file": "/etc/hosts" if len(control_planes) > 1 else "",
            "endpoint_hosts": {"name": "u7s-apiserver", "addresses": []} if len(control_planes) > 1 else None}
    for variables in (role_variables("kubeadm", facts={"inventory_hostname": host, "settings_plan": plan,
                                                       "kubeadm_reset_run_hosts": run}),
                      role_variables("kubeadm", facts={"inventory_hostname": host, "settings_plan": plan,
                                                       "ansible_play_hosts_all": run})):
        assert (conditions_failed([task["when"]], variables) == []) is goes
        assert (conditions_failed([block["when"], write["when"]], variables) == []) is (goes and len(control_planes) > 1)


def test_only_the_roles_own_kubectl_is_removed():
    marker = evaluate("kubeadm_kubectl_marker", role_variables("kubeadm"))
    assert marker in (ROLES / "kubeadm/templates/kubectl.sh.j2").read_text()


def test_the_node_reset_removes_exactly_its_three_volumes():
    for engine in ENGINES:
        (_container, volumes, _network) = load_tasks("node", f"reset-{engine}.yml")
        assert volumes["loop"] == ["var", "opt", "etc"]


# --- remove-node's refusals ----------------------------------------------------------------------------------

def refusal(control_planes=("host1",), **variables) -> list:
    task = task_named("kubeadm", "remove_check.yml", "Refuse a missing or unknown host, and the only control plane")
    facts = {"groups": cluster_groups(HOSTS, control_plane=list(control_planes)), **variables}
    return conditions_failed(task["ansible.builtin.assert"]["that"], {**role_variables("kubeadm", facts=facts), **task["vars"]})


@pytest.mark.parametrize(("name", "refused"), [("", True), ("host1", True), ("nohost", True), ("host2", False)])
def test_remove_node_refuses_the_only_control_plane(name, refused):
    assert bool(refusal(u7s_remove_node=name)) is refused


@pytest.mark.parametrize("name", ["host1", "host2", "host3", "host4"])
def test_remove_node_takes_any_host_of_several_control_planes(name):
    task = task_named("kubeadm", "remove_check.yml", "Refuse a missing or unknown host, and the only control plane")
    groups = cluster_groups(["host1", "host2", "host3", "host4"], control_plane=["host1", "host2", "host3"])
    variables = {**role_variables("kubeadm", facts={"groups": groups, "u7s_remove_node": name}), **task["vars"]}
    assert conditions_failed(task["ansible.builtin.assert"]["that"], variables) == []


@pytest.mark.parametrize(("host", "stays", "etcd"), [("host1", True, True), ("host2", False, False),
                                                     ("host3", True, True), ("host4", True, False)])
def test_remove_node_groups_the_hosts_that_stay_when_a_control_plane_goes(host, stays, etcd):
    groups = cluster_groups(["host1", "host2", "host3", "host4"], control_plane=["host1", "host2", "host3"])
    variables = role_variables("kubeadm", facts={"groups": groups, "inventory_hostname": host,
                                                 "u7s_remove_node": "host2"})
    stay = task_named("kubeadm", "remove_check.yml", "Group the hosts that stay when a control plane goes")
    peer = task_named("kubeadm", "remove_check.yml", "Group the control planes that stay when a control plane goes")
    assert (conditions_failed(stay["when"], variables) == []) is stays
    assert (conditions_failed(peer["when"], variables) == []) is etcd
    worker = role_variables("kubeadm", facts={"groups": groups, "inventory_hostname": "host1", "u7s_remove_node": "host4"})
    assert conditions_failed(stay["when"], worker) != []


def test_remove_node_refuses_limit():
    task = task_named("kubeadm", "remove_check.yml", "Refuse --limit (the host to remove is named with -e u7s_remove_node)")
    assert conditions_failed([task["when"]], role_variables("kubeadm", facts={"ansible_limit": "host2"})) == []
    assert conditions_failed([task["when"]], role_variables("kubeadm")) != []


def test_a_drain_blocked_by_a_disruption_budget_is_retried_until_the_timeout_then_named():
    assert task_named("kubeadm", "remove.yml", "Cordon and drain the node")["ansible.builtin.include_tasks"] == "drain.yml"
    drain = task_named("kubeadm", "drain.yml", "Cordon and drain the node")
    variables = role_variables("kubeadm")
    assert evaluate(drain["retries"].strip("{} "), variables) * drain["delay"] >= 300
    blocked = {"kubeadm_drain": {"msg": "Failed to delete pod default/web due to: Cannot evict pod as it would "
                                        "violate the pod's disruption budget."}}
    refuse = task_named("kubeadm", "drain.yml", "Refuse a drain a PodDisruptionBudget blocks")
    assert conditions_failed([refuse["when"]], role_variables("kubeadm", facts=blocked)) == []
    assert "PodDisruptionBudget" in refuse["ansible.builtin.fail"]["msg"]


# --- remove-node.yml of a control plane: etcd's quorum, read by host ---------------------------------------------

MEMBERS = {"members": [
    {"ID": 1, "name": "u7s-host1", "peerURLs": ["https://192.0.2.11:2380"], "clientURLs": ["https://192.0.2.11:2379"]},
    {"ID": 2, "name": "u7s-host2", "peerURLs": ["https://192.0.2.12:2380"], "clientURLs": ["https://192.0.2.12:2379"]},
    {"ID": 3, "name": "u7s-host3", "peerURLs": ["https://192.0.2.13:2380"], "clientURLs": ["https://192.0.2.13:2379"]},
]}


@pytest.mark.parametrize(("remove", "down", "refused"), [("host2", None, False), ("host2", "host3", True),
                                                         ("host3", "host3", False)])
def test_the_quorum_check_reads_the_members_by_host_and_refuses(remove, down, refused):
    health = [{"endpoint": "https://192.0.2.1%d:2379" % index, "health": "host%d" % index != down}
              for index in (1, 2, 3)]
    plan = {"control_planes": ["host1", "host2", "host3"],
            "hosts": {"host%d" % index: {"node_name": "u7s-host%d" % index} for index in (1, 2, 3, 4)}}
    facts = {"settings_plan": plan, "u7s_remove_node": remove, "kubeadm_etcd_reader": "host1",
             "hostvars": {"host1": {"kubeadm_etcd_member_list": MEMBERS, "kubeadm_etcd_endpoint_health": health}}}
    name = task_named("kubeadm", "remove_etcd_check.yml", "Name etcd's members by host")
    members = template(name["ansible.builtin.set_fact"]["kubeadm_etcd_members"], role_variables("kubeadm", facts=facts))
    assert [member["host"] for member in members] == ["host1", "host2", "host3"]
    refuse = task_named("kubeadm", "remove_etcd_check.yml", "Refuse a removal that would lose etcd's quorum")
    variables = {**role_variables("kubeadm", facts={**facts, "kubeadm_etcd_members": members}), **refuse["vars"]}
    assert (conditions_failed([refuse["when"]], variables) == []) is refused
    if refused:
        assert "host3" in template(refuse["ansible.builtin.fail"]["msg"], variables)


def test_the_removed_nodes_member_is_found_by_name():
    plan = {"hosts": {"host2": {"node_name": "u7s-host2", "host_address": None}}}
    facts = {"settings_plan": plan, "u7s_remove_node": "host2", "kubeadm_etcd_member_list": MEMBERS,
             "kubeadm_etcd_endpoint_health": []}
    task = task_named("kubeadm", "remove_etcd_member.yml", "Find the removed node's members")
    assert template(task["ansible.builtin.set_fact"]["kubeadm_removed_member_ids"],
                    role_variables("kubeadm", facts=facts)) == ["2"]


def test_the_endpoint_block_after_a_removal_leaves_out_the_removed_address():
    (block,) = load_tasks("kubeadm", "remove_endpoint.yml")
    plan = {"endpoint_hosts": {"name": "u7s-apiserver", "addresses": ["192.0.2.11", "192.0.2.12", "192.0.2.13"]},
            "hosts": {"host2": {"host_address": "192.0.2.12"}}}
    variables = {**role_variables("kubeadm", facts={"settings_plan": plan, "u7s_remove_node": "host2"}), **block["vars"]}
    assert evaluate("kubeadm_endpoint_addresses", variables) == ["192.0.2.11", "192.0.2.13"]
    tasks = {task["name"]: task for task in block["block"]}
    node = tasks["Resolve the endpoint's name to the remaining control planes in the node"]
    controller = tasks["Resolve the endpoint's name to the remaining control planes on the controller"]
    assert node["ansible.builtin.include_role"]["tasks_from"] == "endpoint-hosts"
    assert node["vars"] == {"node_endpoint_addresses": "{{ kubeadm_endpoint_addresses }}"}
    assert controller["vars"] == {"kubeadm_controller_hosts_addresses": "{{ kubeadm_endpoint_addresses }}"}
    # The node role and the controller's block render these addresses.
    (write, *_rest) = load_tasks("node", "endpoint-hosts.yml")
    hosts_file = next(item for item in write["loop"] if item["name"] == "hosts")
    content = template(hosts_file["content"], {**variables, "node_endpoint_addresses": ["192.0.2.11", "192.0.2.13"]})
    assert content == ("# BEGIN u7s.cluster control-plane endpoint\n192.0.2.11 u7s-apiserver\n192.0.2.13 u7s-apiserver\n"
                       "# END u7s.cluster control-plane endpoint\n")


@pytest.mark.parametrize(("stdout", "expected"), [
    ('[{"endpoint": "https://192.0.2.11:2379", "health": true}]', [{"endpoint": "https://192.0.2.11:2379", "health": True}]),
    ("", []),
    ("Error: context deadline exceeded", []),
])
def test_the_members_health_is_read_only_from_json(stdout, expected):
    task = task_named("kubeadm", "etcd-members.yml", "Remember the members' health")
    variables = role_variables("kubeadm", facts={"kubeadm_etcd_member_list": MEMBERS,
                                                 "kubeadm_exec": {"rc": 1, "stdout": stdout}})
    assert template(task["ansible.builtin.set_fact"]["kubeadm_etcd_endpoint_health"], variables) == expected


@pytest.mark.parametrize("addresses", [None, ["192.0.2.11", "192.0.2.13"]])
def test_the_controllers_block_names_every_address(addresses):
    """An empty block would make blockinfile remove the block: the controller could not resolve the endpoint."""
    (write,) = load_tasks("kubeadm", "controller-hosts.yml")
    plan = {"endpoint_hosts": {"name": "u7s-apiserver", "addresses": ["192.0.2.11", "192.0.2.12", "192.0.2.13"]}}
    facts = {"settings_plan": plan, **({"kubeadm_controller_hosts_addresses": addresses} if addresses else {})}
    block = template(write["ansible.builtin.blockinfile"]["block"], role_variables("kubeadm", facts=facts))
    expected = addresses or plan["endpoint_hosts"]["addresses"]
    assert block == "\n".join("%s u7s-apiserver" % address for address in expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_endpoint_block_is_merged_through_the_hosts_engine_from_the_users_home(engine):
    """endpoint-hosts.yml has one file for every engine: `<cli> exec`, run where podman and nerdctl can enter."""
    session = engine_session({"u7s_engine": engine})
    variables = {"rootless_runtime_session": session, "node_facts": {"container": "u7s-node", "config_mount": "/u7s"}}
    commands = [task for task in load_tasks("node", "endpoint-hosts.yml") if "ansible.builtin.command" in task]
    assert len(commands) == 2
    for task in commands:
        command = task["ansible.builtin.command"]
        argv = template(command["argv"], variables)
        assert argv[:3] == [session["cli"], "exec", "u7s-node"]
        assert template(command["chdir"], variables) == session["home"]
