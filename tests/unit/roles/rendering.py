# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Load roles' variables and render their templates the way ansible-playbook does (ansible-core 2.19).

Role and inventory files are trusted templates; values that come from modules
(registered results, facts) are not, and are passed in as plain data.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

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
