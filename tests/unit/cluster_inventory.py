# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Inventories for the cluster model, built the way the cluster_plan action gathers them.

The spec is the settings role's real one (meta/argument_specs.yml, entry point
``settings``) and every host's settings start from the role's real defaults
(defaults/main.yml, without the controller-only u7s_kubeconfig), so a test
changes only what it is about. Not named test_*: pytest would collect it.
"""

from __future__ import annotations

import copy
import functools
import typing as t
from pathlib import Path

import yaml

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import (
    CONTROLLER_SETTINGS,
    RENAMED,
    ClusterInput,
    plan_cluster,
)

REPO = Path(__file__).resolve().parents[2]
SETTINGS_ROLE = REPO / "roles" / "settings"
CLUSTER_GROUP = "u7s_cluster"
CONTROL_PLANE_GROUP = "control_plane"
# The hosts of a small inventory, and the addresses their default routes have.
HOSTS = ("host1", "host2")
# The kernel release the hosts' facts report (Debian 13's).
KERNEL = "6.12.48+deb13-amd64"


@functools.lru_cache(maxsize=None)
def _spec() -> dict[str, t.Any]:
    specs = yaml.safe_load((SETTINGS_ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]
    return specs["settings"]["options"]


@functools.lru_cache(maxsize=None)
def _defaults() -> dict[str, t.Any]:
    return yaml.safe_load((SETTINGS_ROLE / "defaults/main.yml").read_text())


def settings_spec() -> dict[str, t.Any]:
    """The options of the settings role's ``settings`` entry point."""
    return copy.deepcopy(_spec())


def settings_defaults() -> dict[str, t.Any]:
    """roles/settings/defaults/main.yml, as written (u7s_kubeconfig is a template there)."""
    return copy.deepcopy(_defaults())


def address_of(index: int) -> str:
    """The default route's address of the index-th host (0-based): 192.0.2.11, 192.0.2.12, ...

    From the 201st host on, 10.16.0.200 and up (apart from the default pod, service and node networks).
    """
    if index < 200:
        return "192.0.2.%d" % (11 + index)
    return "10.%d.%d.%d" % (16 + index // 65536, index // 256 % 256, index % 256)


def host_record(
    name: str,
    host_vars: t.Mapping[str, t.Any] | None = None,
    address: str | None = None,
    all_ipv4: t.Sequence[str] | None = None,
    recorded: str | None = None,
    facts: bool = True,
    kernel: str = KERNEL,
) -> dict[str, t.Any]:
    """One host as the action describes it: its settings (defaults under host_vars), renamed variables, facts."""
    host_vars = host_vars or {}
    defaults = _defaults()
    settings = {
        name_: copy.deepcopy(host_vars[name_] if name_ in host_vars else defaults[name_])
        for name_ in _spec() if name_ not in CONTROLLER_SETTINGS
    }
    return {
        "name": name,
        "settings": settings,
        "renamed": [old for old in RENAMED if old in host_vars],
        "ansible_host": host_vars.get("ansible_host"),
        "default_ipv4": address if facts else None,
        "all_ipv4": (list(all_ipv4) if all_ipv4 is not None else [address] if address else []) if facts else None,
        "kernel": kernel if facts else None,
        "recorded_subnet": recorded,
    }


def cluster_groups(names: t.Sequence[str], control_plane: t.Sequence[str] | None = None) -> dict[str, list[str]]:
    """The collection's inventory layout: u7s_cluster with the children control_plane (the first host) and workers."""
    control = list(names[:1] if control_plane is None else control_plane)
    return {
        "all": list(names),
        CLUSTER_GROUP: list(names),
        CONTROL_PLANE_GROUP: control,
        "workers": [name for name in names if name not in control],
    }


def records_of(
    names: t.Sequence[str] = HOSTS,
    group_vars: t.Mapping[str, t.Any] | None = None,
    host_vars: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
    **record: t.Any,
) -> list[dict[str, t.Any]]:
    """Host records of NAMES: group_vars on every host, host_vars over them, the index-th address each."""
    host_vars = host_vars or {}
    return [
        host_record(name, {**(group_vars or {}), **host_vars.get(name, {})}, address=address_of(index), **record)
        for index, name in enumerate(names)
    ]


def plan(
    records: t.Sequence[t.Mapping[str, t.Any]],
    groups: t.Mapping[str, t.Sequence[str]] | None = None,
    cluster_group: str = CLUSTER_GROUP,
    purpose: str = "bring-up",
    missing_files: t.Collection[str] = (),
) -> dict[str, t.Any]:
    """plan_cluster over the records, with the real spec; the groups default to the collection's layout.

    MISSING_FILES: controller paths the action found to be no files.
    """
    names = [record["name"] for record in records]
    return plan_cluster(ClusterInput(cluster_group, groups or cluster_groups(names), _spec(), frozenset(missing_files)),
                        records, purpose)


def plan_of(
    group_vars: t.Mapping[str, t.Any] | None = None,
    host_vars: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
    names: t.Sequence[str] = HOSTS,
) -> dict[str, t.Any]:
    """The plan of an inventory of NAMES with group_vars and host_vars."""
    return plan(records_of(names, group_vars, host_vars))
