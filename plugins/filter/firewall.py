# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters nft_ruleset and nft_table (docs in nft_ruleset.yml and nft_table.yml beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.firewall import FirewallError, nft_ruleset as render, table_name


def nft_ruleset(ports: t.Any, user: str, cluster_sources: t.Any, apiserver_sources: t.Any = ()) -> str:
    """The nft file of one cluster user's firewall on one host."""
    try:
        return render(user, ports, cluster_sources, apiserver_sources)
    except FirewallError as exc:
        raise AnsibleFilterError("nft_ruleset: %s" % exc) from None


def nft_table(user: str) -> str:
    """The name of the nftables table (family inet) of one cluster user's firewall."""
    return table_name(str(user))


class FilterModule:
    """u7s.cluster firewall filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {"nft_ruleset": nft_ruleset, "nft_table": nft_table}
