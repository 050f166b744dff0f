# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters of the host firewall (docs in <filter name>.yml beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.firewall import (
    FirewallError,
    firewalld_allowed,
    firewalld_plan as plan,
    interface_of,
    nft_ruleset as render,
    table_name,
    ufw_missing,
)


def nft_ruleset(ports: t.Any, user: str, cluster_sources: t.Any, apiserver_sources: t.Any = (),
                control_plane_sources: t.Any = ()) -> str:
    """The nft file of one cluster user's firewall on one host."""
    try:
        return render(user, ports, cluster_sources, apiserver_sources, control_plane_sources)
    except FirewallError as exc:
        raise AnsibleFilterError("nft_ruleset: %s" % exc) from None


def nft_table(user: str) -> str:
    """The name of the nftables table (family inet) of one cluster user's firewall."""
    return table_name(str(user))


def firewalld_plan(ports: t.Any, zone: str, zone_info: str, service_infos: t.Any = None,
                   recorded: t.Any = None) -> dict[str, t.Any]:
    """The ports to open and close in firewalld's ZONE, and the state to record."""
    try:
        return plan(ports, zone, firewalld_allowed(zone_info, service_infos or {}), recorded)
    except (FirewallError, KeyError, TypeError) as exc:
        raise AnsibleFilterError("firewalld_plan: %s" % exc) from None


def ufw_missing_ports(ports: t.Any, status: str) -> list[str]:
    """The ports an active ufw (its ``ufw status verbose``) does not let in."""
    try:
        return ufw_missing(status, ports)
    except (FirewallError, KeyError, TypeError) as exc:
        raise AnsibleFilterError("ufw_missing_ports: %s" % exc) from None


def interface_of_address(address: str, facts: t.Any) -> str:
    """The interface that carries ADDRESS according to a host's facts ('' if none does)."""
    return interface_of(address, facts or {}) or ""


class FilterModule:
    """u7s.cluster firewall filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "nft_ruleset": nft_ruleset,
            "nft_table": nft_table,
            "firewalld_plan": firewalld_plan,
            "ufw_missing_ports": ufw_missing_ports,
            "interface_of_address": interface_of_address,
        }
