"""A playbook's own tasks see a role's defaults only in a play that imports the role statically
(or after an include_role with public: true).

An include_role's defaults stay inside the role; a task of the play (or an include's `when`) that
names one fails with "undefined" on an inventory that does not set it. The molecule inventories set
u7s_kubeconfig, so upgrade.yml's play-level use of it passed there and failed on the test bed's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLE_KEYS = ("ansible.builtin.include_role", "include_role", "ansible.builtin.import_role", "import_role")
NAME = re.compile(r"\b[a-z][a-z0-9_]*\b")


def role_defaults(role: str) -> set[str]:
    path = REPO / "roles" / role / "defaults" / "main.yml"
    return set((yaml.safe_load(path.read_text()) or {}) if path.exists() else {})


def role_dependencies(role: str) -> set[str]:
    """role and the roles its meta/main.yml depends on, recursively (names without the collection)."""
    found, todo = set(), [role]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        meta = REPO / "roles" / current / "meta" / "main.yml"
        for dependency in (yaml.safe_load(meta.read_text()) or {}).get("dependencies") or [] if meta.exists() else []:
            name = dependency if isinstance(dependency, str) else dependency.get("role") or dependency.get("name")
            todo.append(name.rsplit(".", 1)[-1])
    return found


ALL_DEFAULTS = {name: role for role in (p.name for p in (REPO / "roles").iterdir()) for name in role_defaults(role)}


def tasks_of(play: dict):
    """Every task of the play, blocks opened."""
    todo = [task for key in ("pre_tasks", "tasks", "post_tasks", "handlers") for task in play.get(key) or []]
    while todo:
        task = todo.pop(0)
        for key in ("block", "rescue", "always"):
            todo.extend(task.get(key) or [])
        yield task


def play_level_text(task: dict) -> str:
    """What of the task the play templates itself: everything, except an include/import's role arguments."""
    if any(key in task for key in ROLE_KEYS):
        return yaml.safe_dump({key: task[key] for key in ("when", "loop", "with_items") if key in task})
    return yaml.safe_dump({key: value for key, value in task.items() if key not in ("block", "rescue", "always")})


PLAYS = [(path.name, index, play) for path in sorted((REPO / "playbooks").glob("*.yml"))
         for index, play in enumerate(yaml.safe_load(path.read_text()) or []) if "hosts" in play]


@pytest.mark.parametrize(("playbook", "index", "play"), PLAYS, ids=[f"{entry[0]}:{entry[1]}" for entry in PLAYS])
def test_a_play_names_only_the_defaults_it_imports(playbook, index, play):
    imported = set()
    for task in tasks_of(play):
        for key in ("ansible.builtin.import_role", "import_role"):
            if key in task:
                imported |= role_dependencies(task[key]["name"].rsplit(".", 1)[-1])
    for role in play.get("roles") or []:
        imported |= role_dependencies((role if isinstance(role, str) else role["role"]).rsplit(".", 1)[-1])
    visible = set().union(*(role_defaults(role) for role in imported)) | set(play.get("vars") or {})
    for task in tasks_of(play):
        # An include with public: true shows its role's defaults (and its dependencies') to the tasks after it.
        include = task.get("ansible.builtin.include_role") or task.get("include_role") or {}
        if include.get("public"):
            visible |= set().union(*(role_defaults(role) for role in role_dependencies(include["name"].rsplit(".", 1)[-1])))
        text = "".join(re.findall(r"\{\{.*?\}\}|\{%.*?%\}", play_level_text(task), re.S))
        if any(key in task for key in ROLE_KEYS) or "when" in task:
            text += " " + yaml.safe_dump(task.get("when", ""))
        unseen = sorted({name for name in NAME.findall(text) if name in ALL_DEFAULTS} - visible)
        assert not unseen, (f"{playbook} play {index} ({play.get('name')}), task {task.get('name')!r} names "
                            f"{unseen}, defaults of role(s) {sorted({ALL_DEFAULTS[n] for n in unseen})} "
                            "it does not import: undefined unless the inventory sets them")


def test_the_check_sees_the_old_upgrade_playbook():
    """The fault this guards against: upgrade.yml at 109e3f3 named u7s_kubeconfig in a play of include_roles."""
    play = {"hosts": "all", "tasks": [
        {"name": "Mark", "kubernetes.core.k8s": {"kubeconfig": "{{ u7s_kubeconfig }}"}},
        {"name": "Drain", "ansible.builtin.include_role": {"name": "u7s.cluster.kubeadm", "tasks_from": "drain"}}]}
    with pytest.raises(AssertionError, match="u7s_kubeconfig"):
        test_a_play_names_only_the_defaults_it_imports("upgrade.yml", 0, play)
