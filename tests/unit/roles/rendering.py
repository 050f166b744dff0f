# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Load roles' variables and render their templates the way ansible-playbook does (ansible-core 2.19).

Role and inventory files are trusted templates; values that come from modules
(registered results, facts) are not, and are passed in as plain data.

A role of the collection runs after the settings check and with the cluster
user's engine session: :func:`play_facts` gives it the facts those set
(settings_plan and settings_node from the real cluster model, the
rootless_runtime_session that rootless_runtime's session tasks build, the
node_facts of node's describe task), each evaluated from the real task files.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import typing as t

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from cluster_inventory import HOSTS, cluster_groups, plan_of

REPO = Path(__file__).resolve().parents[3]
ROLES = REPO / "roles"
TEST_BED_GROUP_VARS = REPO / "inventories/testbed/group_vars/u7s_cluster.yml"


def versions_env() -> dict[str, str]:
    """artifacts/versions.env, as the shell sees it."""
    out = subprocess.run(
        ["bash", "-c", f"set -a; source {shlex.quote(str(REPO / 'artifacts/versions.env'))}; env -0"],
        capture_output=True, check=True,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def trusted(value):
    """Role files are trusted templates, as ansible-playbook treats them."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


def load_vars(path: Path) -> dict:
    """A variables file (role defaults/vars, inventory group_vars), trusted."""
    return trusted(DataLoader().load_from_file(str(path)) or {})


def inventory_vars_of_test_bed() -> dict:
    """The test bed's group_vars for every cluster host (not named test_*: pytest would collect it)."""
    return load_vars(TEST_BED_GROUP_VARS)


def role_variables(role: str, inventory: dict | None = None, facts: dict | None = None) -> dict:
    """Variables a task of ROLE sees, in Ansible's precedence order.

    role defaults < inventory (group_vars, host_vars) < role vars/main.yml < facts
    (set_fact, registered results); plus the magic variables a template gets.
    Every role depends on u7s.cluster.settings, whose defaults and vars come first.
    """
    variables: dict = {"ansible_managed": "Managed by Ansible", "inventory_dir": "/srv/inventory"}
    chain = ["settings"] if role == "settings" else ["settings", role]
    for name in chain:
        variables.update(load_vars(ROLES / name / "defaults/main.yml"))
    variables.update(inventory or {})
    for name in chain:
        vars_file = ROLES / name / "vars/main.yml"
        if vars_file.exists():
            variables.update(load_vars(vars_file))
    variables.update(facts or {})
    return variables


def render(template: str, variables: dict) -> str:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(template))


def render_role_template(role: str, name: str, variables: dict) -> str:
    return render((ROLES / role / "templates" / name).read_text(), variables)


def render_documents(role: str, name: str, variables: dict) -> list:
    """A role's template rendered and parsed as a YAML stream (empty documents dropped)."""
    return [document for document in yaml.safe_load_all(render_role_template(role, name, variables))
            if document is not None]


def evaluate(expression: str, variables: dict):
    """The value of a Jinja expression (native types, as in a task argument)."""
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template("{{ " + expression + " }}"))


def template(value: t.Any, variables: dict) -> t.Any:
    """A value of a trusted file (a task argument, a list of conditions) templated as Ansible does."""
    return Templar(loader=DataLoader(), variables=variables).template(trusted(value))


def load_tasks(role: str, name: str) -> list:
    """A role's task file, trusted."""
    return trusted(DataLoader().load_from_file(str(ROLES / role / "tasks" / name)))


def all_tasks(role: str, file: str) -> list:
    """Every task of a role's task file, those inside blocks (block, rescue, always) too."""
    found = []

    def walk(tasks: list) -> None:
        for task in tasks:
            found.append(task)
            for key in ("block", "rescue", "always"):
                walk(task.get(key) or [])

    walk(load_tasks(role, file))
    return found


def task_named(role: str, file: str, name: str) -> dict:
    """The one task called NAME in a role's task file (looked for inside blocks too)."""
    found = []

    def walk(tasks: list) -> None:
        for task in tasks:
            if task.get("name") == name:
                found.append(task)
            for key in ("block", "rescue", "always"):
                walk(task.get(key) or [])

    walk(load_tasks(role, file))
    (task,) = found
    return task


def conditions_failed(conditions: list, variables: dict) -> list:
    """The conditions (assert that:, when:) that do not hold, stopping at the first as Ansible does."""
    for condition in conditions:
        if not evaluate(condition, variables):
            return [condition]
    return []


def engine_session(inventory: dict | None = None, uid: int = 1001) -> dict:
    """rootless_runtime_session as rootless_runtime's session tasks set it, for a cluster user with UID."""
    user = evaluate("u7s_user", role_variables("rootless_runtime", inventory))
    passwd = {user: ["x", str(uid), str(uid), "", "/home/" + user, "/bin/bash"]}
    variables = role_variables("rootless_runtime", inventory, facts={"ansible_facts": {"getent_passwd": passwd}})
    task = task_named("rootless_runtime", "session.yml", "Describe the cluster user's session")
    session = template(task["ansible.builtin.set_fact"]["rootless_runtime_session"], {**variables, **task["vars"]})
    (engine_task,) = load_tasks("rootless_runtime", "session-%s.yml" % session["engine"])
    return template(engine_task["ansible.builtin.set_fact"]["rootless_runtime_session"],
                    {**variables, "rootless_runtime_session": session})


def play_facts(inventory: dict | None = None, host: str = "host1", hosts: t.Sequence[str] = HOSTS) -> dict:
    """The facts a role sees on HOST of a cluster of HOSTS with INVENTORY as its group_vars.

    settings_plan and settings_node: the cluster model's plan (every problem fails the test);
    rootless_runtime_session: the engine session; node_facts: node's describe task, on every host.
    """
    plan = plan_of(inventory, names=hosts)
    assert plan["problems"] == [], plan["problems"]
    session = engine_session(inventory)
    describe = task_named("node", "describe.yml", "Describe the node")["ansible.builtin.set_fact"]["node_facts"]
    hostvars = {}
    for name in hosts:
        node_vars = role_variables("node", inventory, facts={
            "inventory_hostname": name, "settings_node": plan["hosts"][name], "rootless_runtime_session": session})
        hostvars[name] = {"settings_node": plan["hosts"][name], "node_facts": template(describe, node_vars)}
    return {
        "groups": cluster_groups(hosts),
        "hostvars": hostvars,
        "inventory_hostname": host,
        "ansible_play_hosts": list(hosts),
        "settings_plan": plan,
        "rootless_runtime_session": session,
        **hostvars[host],
    }


def role_on_host(role: str, inventory: dict | None = None, host: str = "host1", **facts) -> dict:
    """Variables a task of ROLE sees on HOST after the settings check (see play_facts), plus FACTS."""
    return role_variables(role, inventory=inventory, facts={**play_facts(inventory, host), **facts})


# --- what the roles render, read back ---------------------------------------------------------------

def by_kind(documents: list) -> dict:
    """Kubernetes objects by kind; a kind given twice is an error."""
    kinds = [document["kind"] for document in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {document["kind"]: document for document in documents}


def extra_args(args: list) -> dict:
    """kubeadm v1beta4 extraArgs (a list of name/value pairs) as a mapping; a name given twice is an error."""
    names = [arg["name"] for arg in args]
    assert len(names) == len(set(names)), names
    assert all(set(arg) == {"name", "value"} for arg in args), args
    return {arg["name"]: arg["value"] for arg in args}


def kubeadm_init_config(inventory: dict | None = None) -> dict:
    """kubeadm-init.yaml of the control-plane host (host1), by kind."""
    return by_kind(render_documents("kubeadm", "kubeadm-init.yaml.j2", role_on_host("kubeadm", inventory)))


def flannel_manifest(inventory: dict | None = None) -> dict:
    """kube-flannel.yaml, by kind."""
    return by_kind(render_documents("flannel", "kube-flannel.yaml.j2", role_variables("flannel", inventory=inventory)))


def flannel_config_file(key: str, inventory: dict | None = None) -> dict:
    """One of the JSON files of flannel's ConfigMap, parsed."""
    data = flannel_manifest(inventory)["ConfigMap"]["data"]
    assert set(data) == {"cni-conf.json", "net-conf.json"}
    return json.loads(data[key])


# The module each engine's task file runs the node container with, and its argument for published ports.
# nerdctl has no module: its task file's spec (the block variable node_nerdctl_spec) stands in.
CONTAINER_MODULES = {"docker": ("community.docker.docker_container", "published_ports"),
                     "podman": ("containers.podman.podman_container", "publish"),
                     "nerdctl": ("node_nerdctl_spec", "publish")}
# What the podman task file registers before it runs the container: no container, no image yet.
PODMAN_READS = {"node_podman_container": {"containers": []}, "node_podman_image": {"images": []}}


def node_variables(inventory: dict | None = None, host: str = "host1") -> dict:
    """What the node role's tasks see on HOST, with the block variables of its main task file."""
    block = task_named("node", "main.yml", "Run the node container as the cluster user")
    return {**role_on_host("node", inventory, host, **PODMAN_READS), **block["vars"]}


def node_container(inventory: dict | None = None, host: str = "host1") -> dict:
    """The node container task's module arguments for the session's engine (u7s_engine), evaluated."""
    variables = node_variables(inventory, host)
    engine = variables["rootless_runtime_session"]["engine"]
    module, _ports = CONTAINER_MODULES[engine]
    task = task_named("node", "container-%s.yml" % engine, "Run the node container")
    return template(task["vars"][module] if module == "node_nerdctl_spec" else task[module], variables)
