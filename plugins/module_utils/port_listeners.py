# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Who listens on which port, read from /proc/net/{tcp,tcp6,udp,udp6}.

Each line of those files describes one socket of the reading process's network
namespace::

      sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
       0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 ...

Addresses are the kernel's 32-bit words printed as hex in host byte order
(``%08X`` of a ``__be32``), so on little-endian machines each word reads
backwards: 127.0.0.1 is ``0100007F``, and an IPv6 address is four such
words. Ports are printed already converted to host order. ``st`` is the TCP
state; 0A is LISTEN, and for UDP 07 (CLOSE) marks a bound, unconnected socket.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import sys
import typing as t

PROTOCOLS = ("tcp", "udp")
# /proc/net file -> protocol.
PROC_NET_FILES = (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp"))
# The state of a socket that takes connections (TCP) or datagrams from anyone (UDP).
LISTEN_STATES = {"tcp": 0x0A, "udp": 0x07}


class Socket(t.NamedTuple):
    """One line of a /proc/net socket table."""

    protocol: str
    address: str
    port: int
    state: int
    uid: int


def decode_address(text: str, byteorder: str = sys.byteorder) -> str:
    """The address of a /proc/net ``ADDR`` field (8 or 32 hex digits), as a string.

    byteorder is that of the machine that wrote the file. IPv4-mapped IPv6
    addresses read ``::ffff:a.b.c.d`` on every Python version.
    """
    if len(text) not in (8, 32):
        raise ValueError("%r is neither an IPv4 nor an IPv6 address of /proc/net" % text)
    packed = b"".join(
        int(text[index:index + 8], 16).to_bytes(4, byteorder)  # type: ignore[arg-type]
        for index in range(0, len(text), 8)
    )
    if len(packed) == 4:
        return str(ipaddress.IPv4Address(packed))
    address = ipaddress.IPv6Address(packed)
    if address.ipv4_mapped is not None:
        return "::ffff:%s" % address.ipv4_mapped
    return str(address)


def parse_proc_net(text: str, protocol: str, byteorder: str = sys.byteorder) -> list[Socket]:
    """The sockets of one /proc/net table; the header and malformed lines are skipped."""
    sockets = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8 or not fields[0].endswith(":"):
            continue  # the header, or garbage
        try:
            address, port = fields[1].rsplit(":", 1)
            sockets.append(
                Socket(protocol, decode_address(address, byteorder), int(port, 16), int(fields[3], 16), int(fields[7]))
            )
        except ValueError:
            continue
    return sockets


def is_listening(entry: Socket) -> bool:
    """Whether the socket holds its port for anyone: TCP LISTEN, or a bound, unconnected UDP socket."""
    return LISTEN_STATES.get(entry.protocol) == entry.state


def user_name(uid: int) -> str | None:
    """The login name of uid, None when the passwd database has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


class ListenerReport(t.NamedTuple):
    """What :func:`find_listeners` found."""

    listeners: list[dict[str, t.Any]]
    # Names of the /proc/net files that could not be read (a kernel without IPv6 has no tcp6/udp6).
    unreadable: list[str]


def find_listeners(
    proc_path: str, wanted: t.Iterable[tuple[int, str]], byteorder: str = sys.byteorder
) -> ListenerReport:
    """The sockets that hold the wanted (port, protocol) pairs.

    One entry per port, protocol, address and uid, sorted by them.
    """
    wanted = set(wanted)
    protocols = {protocol for _port, protocol in wanted}
    found = set()
    unreadable = []
    for name, protocol in PROC_NET_FILES:
        if protocol not in protocols:
            continue
        path = os.path.join(proc_path, "net", name)
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                text = handle.read()
        except OSError:
            unreadable.append(name)
            continue
        for entry in parse_proc_net(text, protocol, byteorder):
            if (entry.port, protocol) in wanted and is_listening(entry):
                found.add((entry.port, protocol, entry.address, entry.uid))
    listeners = [
        {"port": port, "protocol": protocol, "address": address, "uid": uid, "user": user_name(uid)}
        for port, protocol, address, uid in sorted(found)
    ]
    return ListenerReport(listeners, unreadable)
