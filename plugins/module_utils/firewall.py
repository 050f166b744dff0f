# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The host firewall of one cluster user: an nftables table of its own.

Pure logic on plain data, no I/O; the ``u7s.cluster.nft_ruleset`` filter renders
the file the ``firewall`` role loads with ``nft -f``.

The table only narrows: its one base chain drops packets to the node's own
ports from addresses the cluster does not know, and accepts (within the table)
everything else, so the host's other tables and rules decide as before. Loading
the file replaces the table in one transaction (``table`` + ``delete table`` +
the new table): there is never a moment without the rules, and a re-load
leaves exactly one copy.
"""

from __future__ import annotations

import ipaddress
import re
import typing as t
from collections.abc import Mapping, Sequence

SOURCES = ("cluster", "apiserver")
PROTOCOLS = ("tcp", "udp")
# nftables identifiers: letters, digits, underscore; the user name is folded into one.
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


class FirewallError(ValueError):
    """The input does not have the documented shape."""


def table_name(user: str) -> str:
    """The table of ``user``'s cluster: u7s_<user>, other characters as '_' plus a short checksum."""
    folded = _NOT_IDENTIFIER.sub("_", user)
    if folded != user:
        # Two users folding to one name (a.b, a_b) keep distinct tables.
        folded += "_%04x" % (sum(ord(char) * (index + 1) for index, char in enumerate(user)) % 0x10000)
    return "u7s_" + folded


def _networks(values: t.Iterable[t.Any], what: str) -> tuple[list[str], list[str]]:
    """The values as IPv4 and IPv6 networks, without duplicates, in a stable order."""
    found: dict[int, set[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: set(), 6: set()}
    for value in values:
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            raise FirewallError("%s holds %r, which is neither an address nor a network." % (what, value)) from None
        found[network.version].add(network)
    return ([str(network) for network in sorted(found[4])], [str(network) for network in sorted(found[6])])


def _set(name: str, kind: str, elements: Sequence[str]) -> list[str]:
    lines = ["\tset %s {" % name, "\t\ttype %s" % kind, "\t\tflags interval"]
    if elements:
        lines.append("\t\telements = { %s }" % ", ".join(elements))
    lines.append("\t}")
    return lines


def nft_ruleset(
    user: str,
    ports: Sequence[Mapping[str, t.Any]],
    cluster_sources: Sequence[t.Any],
    apiserver_sources: Sequence[t.Any] = (),
) -> str:
    """The nft file for ``user``'s cluster on one host.

    ``ports``: the node ports the host publishes, each ``{port, protocol, sources}``
    with sources ``cluster`` (the inventory's host addresses) or ``apiserver``
    (those and ``apiserver_sources``: the controller, admin networks).
    """
    if not isinstance(user, str) or not user:
        raise FirewallError("The cluster user must be a non-empty string, got %r." % (user,))
    if isinstance(ports, (str, bytes)) or not isinstance(ports, Sequence):
        raise FirewallError("The ports must be a list of {port, protocol, sources}, got %s." % type(ports).__name__)
    cluster = _networks(cluster_sources, "The cluster's host addresses")
    apiserver = _networks(list(cluster_sources) + list(apiserver_sources), "The API server's sources")
    allowed = {"cluster": cluster, "apiserver": apiserver}

    rules = []
    for index, port in enumerate(ports):
        if not isinstance(port, Mapping):
            raise FirewallError("Port %d is not a dictionary but %s." % (index + 1, type(port).__name__))
        number, protocol, sources = port.get("port"), port.get("protocol", "tcp"), port.get("sources")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            raise FirewallError("Port %d: %r is not a port number." % (index + 1, number))
        if protocol not in PROTOCOLS:
            raise FirewallError("Port %d: protocol %r is not tcp or udp." % (index + 1, protocol))
        if sources not in SOURCES:
            raise FirewallError("Port %d: sources %r is not one of %s." % (index + 1, sources, ", ".join(SOURCES)))
        rules += [
            "\t\t%s dport %d ip saddr @%s_v4 accept" % (protocol, number, sources),
            "\t\t%s dport %d ip6 saddr @%s_v6 accept" % (protocol, number, sources),
            # Counted, so a test (or an operator) can see what was refused.
            "\t\t%s dport %d counter drop comment \"not from %s\"" % (
                protocol, number, "the cluster's hosts" if sources == "cluster" else "the API server's sources"),
        ]

    table = table_name(user)
    lines = [
        "# The u7s.cluster firewall of the cluster of user %s (generated; the firewall role rewrites it)." % user,
        "# Replaces the table in one transaction: declare it (so the delete cannot fail), delete, define.",
        "table inet %s" % table,
        "delete table inet %s" % table,
        "table inet %s {" % table,
    ]
    for kind in SOURCES:
        lines += _set("%s_v4" % kind, "ipv4_addr", allowed[kind][0])
        lines += _set("%s_v6" % kind, "ipv6_addr", allowed[kind][1])
    lines += [
        "\tchain input {",
        # Before the usual filter chains, so the drop happens whatever they accept.
        "\t\ttype filter hook input priority filter - 10; policy accept;",
        # The host's own connections (a node reaching its own API server by the host address) stay local.
        "\t\tiif \"lo\" accept",
        *rules,
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
