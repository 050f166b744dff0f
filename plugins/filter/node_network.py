# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters for node networks and published ports (docs in the .yml files beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.node_subnets import (
    DEFAULT_POOL,
    DEFAULT_PREFIX,
    NodeNetworkError,
    plan_node_networks,
)
from ansible_collections.u7s.cluster.plugins.module_utils.ports import port_conflicts as _port_conflicts


def node_network_plan(
    hosts: t.Any,
    pool: t.Any = DEFAULT_POOL,
    prefix: t.Any = DEFAULT_PREFIX,
    reserved: t.Any = None,
    host_addresses: t.Any = None,
) -> dict[str, dict[str, str]]:
    """Each host's node subnet, node IP and gateway, keyed by inventory hostname."""
    try:
        plan = plan_node_networks(hosts, pool, prefix, reserved, host_addresses)
    except NodeNetworkError as exc:
        raise AnsibleFilterError("node_network_plan: %s" % exc) from None
    return {name: network.as_dict() for name, network in plan.items()}


def port_conflicts(records: t.Any, protocols: t.Any = None) -> list[str]:
    """Problems with the ports the hosts' clusters publish, each with its fix."""
    try:
        return _port_conflicts(records, protocols)
    except ValueError as exc:
        raise AnsibleFilterError("port_conflicts: %s" % exc) from None


class FilterModule:
    """u7s.cluster node network filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "node_network_plan": node_network_plan,
            "port_conflicts": port_conflicts,
        }
