# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Filters of several control planes: the endpoint's hosts block, etcd's quorum on removal."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.control_planes import (
    hosts_block,
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


class FilterModule:
    """u7s.cluster control-plane filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "endpoint_hosts_block": endpoint_hosts_block,
            "etcd_removal_refusal": etcd_removal_refusal,
        }
