# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Filters of several control planes: the endpoint's hosts block, etcd's quorum on removal."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.control_planes import (
    etcd_members as _etcd_members,
    hosts_block,
    members_of_host,
    removal_problem,
)


def endpoint_hosts_block(name: t.Any, addresses: t.Any) -> str:
    """The marked hosts-file block resolving NAME to every address."""
    try:
        return hosts_block(str(name), [str(address) for address in addresses])
    except ValueError as exc:
        raise AnsibleFilterError("endpoint_hosts_block: %s" % exc) from None


def etcd_removal_refusal(health: t.Any, host: t.Any, control_planes: t.Any) -> str:
    """Why control plane HOST may not leave etcd now; "" when it may (or is no control plane)."""
    if not isinstance(health, dict):
        raise AnsibleFilterError("etcd_removal_refusal: the members' health must be a dictionary, got %s"
                                 % type(health).__name__)
    return removal_problem(str(host), [str(name) for name in control_planes],
                           {str(name): bool(value) for name, value in health.items()}) or ""


def etcd_members(member_list: t.Any, endpoint_health: t.Any, node_hosts: t.Any) -> list[dict[str, t.Any]]:
    """etcd's members (etcdctl member list -w json) with their inventory host and health."""
    if not isinstance(member_list, dict):
        raise AnsibleFilterError("etcd_members: the member list must be a dictionary (etcdctl member list -w json), "
                                 "got %s" % type(member_list).__name__)
    if endpoint_health is not None and not isinstance(endpoint_health, list):
        raise AnsibleFilterError("etcd_members: the endpoint health must be a list (etcdctl endpoint health "
                                 "--cluster -w json), got %s" % type(endpoint_health).__name__)
    try:
        return _etcd_members(member_list, endpoint_health, {str(name): str(host) for name, host in dict(node_hosts).items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("etcd_members: a member without a numeric ID: %s" % exc) from None


def etcd_member_ids(members: t.Any, node_name: t.Any, address: t.Any = None) -> list[str]:
    """The hex IDs of the etcd members that are NODE_NAME's (by name, or by a peer URL on ADDRESS)."""
    return members_of_host(list(members), str(node_name or ""), str(address) if address else None)


class FilterModule:
    """u7s.cluster control-plane filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "endpoint_hosts_block": endpoint_hosts_block,
            "etcd_member_ids": etcd_member_ids,
            "etcd_members": etcd_members,
            "etcd_removal_refusal": etcd_removal_refusal,
        }
