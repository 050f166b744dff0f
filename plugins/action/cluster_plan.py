# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Action for u7s.cluster.cluster_plan (documentation in plugins/modules/cluster_plan.py)."""

from __future__ import annotations

import base64
import json
import os
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import (
    CONTROLLER_SETTINGS,
    RENAMED,
    PURPOSES,
    ClusterInput,
    plan_cluster,
)
from ansible_collections.u7s.cluster.plugins.module_utils.registries import controller_files

# The settings role's entry point that declares every setting.
SETTINGS_ENTRY_POINT = "settings"


def _settings_role(role: t.Any) -> tuple[t.Any, dict[str, t.Any]]:
    """The u7s.cluster.settings role (the task's own, or a dependency of it) and its settings' spec."""
    candidates = [role, *role.get_all_dependencies()] if role is not None else []
    for candidate in candidates:
        specs = candidate._get_role_argspecs() or {}
        if SETTINGS_ENTRY_POINT in specs:
            return candidate, specs[SETTINGS_ENTRY_POINT]["options"]
    raise AnsibleActionFail(
        "u7s.cluster.cluster_plan runs in a role of the u7s.cluster collection (which depends on u7s.cluster.settings)."
    )


def _facts_of(host_vars: t.Any) -> t.Mapping[str, t.Any]:
    facts = host_vars.get("ansible_facts") if "ansible_facts" in host_vars else None
    return facts if isinstance(facts, t.Mapping) else {}


def _recorded_node(host_vars: t.Any) -> tuple[str | None, dict[str, t.Any] | None]:
    """The subnet the host's node network uses and the settings its node runs with, from its node
    state file (slurped by the check).

    The subnet is "" when the host has none, None when it is unknown (the check did not run there:
    --limit); the settings are None when unknown (or recorded by an earlier release).
    """
    state = host_vars.get("settings_node_state") if "settings_node_state" in host_vars else None
    if not isinstance(state, t.Mapping):
        return None, None
    if "content" not in state:
        return "", None
    try:
        recorded = json.loads(base64.b64decode(state["content"]))
        subnet, settings = recorded.get("subnet"), recorded.get("settings")
    except (ValueError, TypeError, AttributeError):
        # An unreadable state file: planned as a new node, and the node role rewrites the file.
        return "", None
    return (subnet if isinstance(subnet, str) else ""), (settings if isinstance(settings, dict) else None)


class ActionModule(ActionBase):
    """Check the whole inventory and plan every host's node, on the controller."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset({"purpose"})

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        purpose = self._task.args.get("purpose", "bring-up")
        if purpose not in PURPOSES:
            raise AnsibleActionFail("u7s.cluster.cluster_plan: purpose must be one of %s, got %r."
                                    % (", ".join(PURPOSES), purpose))
        role, spec = _settings_role(self._task._role)
        defaults = role.get_default_vars()
        templar = self._templar

        group = templar.template(task_vars.get("u7s_cluster_group", defaults.get("u7s_cluster_group")))
        if not isinstance(group, str):
            raise AnsibleActionFail("u7s_cluster_group must be the name of an inventory group, got %r. Fix: set it to "
                                    "the group that holds every cluster host (u7s_cluster)." % (group,))
        groups = task_vars["groups"]
        hostvars = task_vars["hostvars"]
        members = list(groups.get(group, [])) if group in groups else []

        play_hosts = set(task_vars.get("ansible_play_hosts_all") or ())
        # The defaults are the same for every host (the one templated default is the controller's kubeconfig).
        checked = {setting: templar.template(defaults[setting]) for setting in spec if setting not in CONTROLLER_SETTINGS}
        hosts = []
        for name in members:
            host_vars = hostvars[name]
            settings = {setting: host_vars[setting] if setting in host_vars else default
                        for setting, default in checked.items()}
            facts = _facts_of(host_vars)
            recorded_subnet, recorded_settings = _recorded_node(host_vars)
            default_ipv4 = facts.get("default_ipv4") or {}
            hosts.append({
                "name": name,
                "settings": settings,
                "renamed": [old for old in RENAMED if old in host_vars],
                "ansible_host": host_vars.get("ansible_host") if "ansible_host" in host_vars else None,
                "default_ipv4": default_ipv4.get("address"),
                "all_ipv4": facts.get("all_ipv4_addresses"),
                # The running kernel's release (u7s_bypass4netns needs 5.9); None without facts.
                "kernel": facts.get("kernel"),
                "recorded_subnet": recorded_subnet,
                "recorded_settings": recorded_settings,
                "in_play": name in play_hosts,
            })

        # The certificate files u7s_registries names are copied from the controller: check they are there.
        named = {path for host in hosts for path in controller_files(host["settings"].get("u7s_registries"))}
        # So are the fleet registry's CA, its site images and the offline images' manifest.
        generated_ca = (templar.template(task_vars.get("settings_registry_generated_ca", "")),
                        templar.template(task_vars.get("settings_registry_generated_ca_key", "")))
        registry_group = hosts[0]["settings"].get("u7s_registry_group") if hosts else None
        registry_hosts = None
        if isinstance(registry_group, str) and registry_group in groups:
            registry_hosts = []
            for name in groups[registry_group]:
                host_vars = hostvars[name]
                registry_hosts.append({
                    "name": name,
                    "host_ip": host_vars["u7s_host_ip"] if "u7s_host_ip" in host_vars else "",
                    "ansible_host": host_vars.get("ansible_host") if "ansible_host" in host_vars else None,
                    "default_ipv4": (_facts_of(host_vars).get("default_ipv4") or {}).get("address"),
                })
            named |= set(generated_ca)
            for host in hosts[:1]:
                settings = host["settings"]
                named |= {path for path in (settings.get("u7s_registry_ca_file"), settings.get("u7s_registry_ca_key_file"))
                          if isinstance(path, str) and os.path.isabs(path)}
                images = settings.get("u7s_registry_images")
                named |= {path for path in (images if isinstance(images, list) else [])
                          if isinstance(path, str) and os.path.isabs(path)}
                offline = settings.get("u7s_registry_offline_images_dir")
                if isinstance(offline, str) and os.path.isabs(offline):
                    named.add(os.path.join(offline, "manifest.json"))
        missing = frozenset(path for path in named if path and not os.path.isfile(path))
        plan = plan_cluster(ClusterInput(group, groups, spec, missing, registry_hosts, generated_ca), hosts, purpose)
        result["changed"] = False
        result.update(plan)
        if plan["problems"]:
            result["failed"] = True
            result["msg"] = (
                "The inventory cannot make a working cluster (%d problem%s); no host was changed.\n- %s"
                % (len(plan["problems"]), "" if len(plan["problems"]) == 1 else "s", "\n- ".join(plan["problems"]))
            )
        return result
