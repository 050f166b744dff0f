# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""port_listeners: /proc/net parsing on hand-written and captured tables, the module on them and on this machine."""

from __future__ import annotations

import os
import pwd
import socket
import typing as t
from pathlib import Path

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.port_listeners import (
    Socket,
    decode_address,
    find_listeners,
    is_listening,
    parse_proc_net,
)
from ansible_collections.u7s.cluster.plugins.modules import port_listeners

# Written by hand as a little-endian x86_64 kernel prints them.
# 0.0.0.0:6443 and 127.0.0.1:2379 listen (uid 1001); 192.0.2.10:6443 has an established connection
# from 198.51.100.7:51234 and 192.0.2.10:10250 one in TIME_WAIT: neither holds the port for others.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 31338 1 0000000000000000 100 0 0 10 0
   2: 0A0200C0:192B 076433C6:C822 01 00000000:00000000 02:000AFC10 00000000  1001        0 31339 4 0000000000000000 20 4 23 10 -1
   3: 0A0200C0:280A 076433C6:C823 06 00000000:00000000 03:00001669 00000000     0        0 0 3 0000000000000000
"""

# :::10250 listens (uid 1001), ::1:6443 (root), 2001:db8::10:2379 (uid 1002) and ::ffff:192.0.2.10:6443
# (uid 1002) too; fe80::1:6443 is connected.
TCP6 = (
    "  sl  local_address                         remote_address                        "
    "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1001        0 41001 1 0000000000000000 100 0 0 10 0\n"
    "   1: 00000000000000000000000001000000:192B 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 41002 1 0000000000000000 100 0 0 10 0\n"
    "   2: B80D0120000000000000000010000000:094B 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1002        0 41003 1 0000000000000000 100 0 0 10 0\n"
    "   3: 0000000000000000FFFF00000A0200C0:192B 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1002        0 41004 1 0000000000000000 100 0 0 10 0\n"
    "   4: 000080FE000000000000000001000000:192B 000080FE000000000000000002000000:D431 01 "
    "00000000:00000000 00:00000000 00000000  1001        0 41005 1 0000000000000000 20 4 30 10 -1\n"
)

# 0.0.0.0:8472 bound twice by uid 1001 (SO_REUSEPORT: one listener in the result), connected
# 192.0.2.10:8472 -> 198.51.100.7:53 does not count.
UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000  1001        0 51001 2 0000000000000000 0
  101: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000  1001        0 51002 2 0000000000000000 0
  102: 0A0200C0:2118 076433C6:0035 01 00000000:00000000 00:00000000 00000000  1001        0 51003 2 0000000000000000 0
"""

UDP6 = (
    "  sl  local_address                         remote_address                        "
    "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
    "  200: 00000000000000000000000000000000:2118 00000000000000000000000000000000:0000 07 "
    "00000000:00000000 00:00000000 00000000  1002        0 61001 2 0000000000000000 0\n"
)

# Captured from the machine these tests were written on (`cat /proc/net/tcp`): 0.0.0.0:2024 listens
# (root); two SSH connections from 172.30.0.1 to 172.30.0.12, one of them in TIME_WAIT.
CAPTURED_TCP = (
    "  sl  local_address rem_address   "
    "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"
    "   0: 00000000:07E8 00000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 549 1 00000000af8e12e2 100 0 0 10 0                       \n"
    "   1: 01001EAC:88E6 0C001EAC:0016 06 "
    "00000000:00000000 03:00001669 00000000     0        0 0 3 00000000721b1d64                                      \n"
    "   2: 01001EAC:E4DC 0C001EAC:0016 01 "
    "00000000:00000000 02:000AFC10 00000000     0        0 1481306 3 00000000e35a6fa4 20 4 20 189 -1                 \n"
)


def listener(port: int, protocol: str, address: str, uid: int) -> dict[str, t.Any]:
    return {"port": port, "protocol": protocol, "address": address, "uid": uid, "user": name_of(uid)}


def name_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A fake /proc with the four tables above."""
    (tmp_path / "net").mkdir()
    for name, text in (("tcp", TCP), ("tcp6", TCP6), ("udp", UDP), ("udp6", UDP6)):
        (tmp_path / "net" / name).write_text(text, encoding="ascii")
    return tmp_path


class TestDecodeAddress:
    @pytest.mark.parametrize("text, expected", [
        ("00000000", "0.0.0.0"),
        ("0100007F", "127.0.0.1"),
        ("0A0200C0", "192.0.2.10"),
        ("01001EAC", "172.30.0.1"),
        ("00000000000000000000000000000000", "::"),
        ("00000000000000000000000001000000", "::1"),
        ("B80D0120000000000000000010000000", "2001:db8::10"),
        ("000080FE000000000000000001000000", "fe80::1"),
        ("0000000000000000FFFF00000A0200C0", "::ffff:192.0.2.10"),
    ])
    def test_little_endian(self, text: str, expected: str) -> None:
        assert decode_address(text, "little") == expected
        assert decode_address(text.lower(), "little") == expected

    @pytest.mark.parametrize("text, expected", [
        ("7F000001", "127.0.0.1"),
        ("20010DB8000000000000000000000010", "2001:db8::10"),
    ])
    def test_big_endian(self, text: str, expected: str) -> None:
        assert decode_address(text, "big") == expected

    def test_matches_the_kernel_encoding(self) -> None:
        """Encode as the kernel does (%08X of each native 32-bit word) and decode back."""
        for family, address in ((socket.AF_INET, "203.0.113.77"), (socket.AF_INET6, "2001:db8:1:2:3:4:5:6")):
            packed = socket.inet_pton(family, address)
            text = "".join(
                "%08X" % int.from_bytes(packed[index:index + 4], "little") for index in range(0, len(packed), 4)
            )
            assert decode_address(text, "little") == address

    @pytest.mark.parametrize("text", ["", "0100007", "0100007F00", "XYZ0007F"])
    def test_malformed(self, text: str) -> None:
        with pytest.raises(ValueError):
            decode_address(text, "little")


class TestParse:
    def test_tcp(self) -> None:
        assert parse_proc_net(TCP, "tcp", "little") == [
            Socket("tcp", "0.0.0.0", 6443, 0x0A, 1001),
            Socket("tcp", "127.0.0.1", 2379, 0x0A, 1001),
            Socket("tcp", "192.0.2.10", 6443, 0x01, 1001),
            Socket("tcp", "192.0.2.10", 10250, 0x06, 0),
        ]

    def test_tcp6(self) -> None:
        sockets = parse_proc_net(TCP6, "tcp", "little")
        assert [(s.address, s.port, s.state, s.uid) for s in sockets] == [
            ("::", 10250, 0x0A, 1001),
            ("::1", 6443, 0x0A, 0),
            ("2001:db8::10", 2379, 0x0A, 1002),
            ("::ffff:192.0.2.10", 6443, 0x0A, 1002),
            ("fe80::1", 6443, 0x01, 1001),
        ]

    def test_captured_from_a_real_kernel(self) -> None:
        sockets = parse_proc_net(CAPTURED_TCP, "tcp", "little")
        assert sockets == [
            Socket("tcp", "0.0.0.0", 2024, 0x0A, 0),
            Socket("tcp", "172.30.0.1", 35046, 0x06, 0),
            Socket("tcp", "172.30.0.1", 58588, 0x01, 0),
        ]
        assert [is_listening(entry) for entry in sockets] == [True, False, False]

    def test_udp_states(self) -> None:
        sockets = parse_proc_net(UDP, "udp", "little")
        assert [(s.address, s.port, is_listening(s)) for s in sockets] == [
            ("0.0.0.0", 8472, True), ("0.0.0.0", 8472, True), ("192.0.2.10", 8472, False),
        ]

    def test_header_and_garbage_are_skipped(self) -> None:
        text = TCP.splitlines()[0] + "\n\n   9: nonsense\n   10: ZZZZZZZZ:0016 00000000:0000 0A a b c 0 0 1\n"
        assert parse_proc_net(text, "tcp", "little") == []


class TestFindListeners:
    def test_requested_ports_only_deduplicated_and_sorted(self, proc: Path) -> None:
        wanted = [(6443, "tcp"), (2379, "tcp"), (10250, "tcp"), (8472, "udp")]
        report = find_listeners(str(proc), wanted, "little")
        assert report.unreadable == []
        assert report.listeners == [
            listener(2379, "tcp", "127.0.0.1", 1001),
            listener(2379, "tcp", "2001:db8::10", 1002),
            listener(6443, "tcp", "0.0.0.0", 1001),
            listener(6443, "tcp", "::1", 0),
            listener(6443, "tcp", "::ffff:192.0.2.10", 1002),
            listener(8472, "udp", "0.0.0.0", 1001),
            listener(8472, "udp", "::", 1002),
            listener(10250, "tcp", "::", 1001),
        ]

    def test_protocol_matters(self, proc: Path) -> None:
        assert find_listeners(str(proc), [(8472, "tcp"), (6443, "udp")], "little").listeners == []

    def test_only_the_needed_files_are_read(self, proc: Path) -> None:
        (proc / "net" / "udp").unlink()
        report = find_listeners(str(proc), [(6443, "tcp")], "little")
        assert report.unreadable == [] and len(report.listeners) == 3


@pytest.fixture
def run(run_module: t.Callable[..., dict[str, t.Any]]) -> t.Callable[..., dict[str, t.Any]]:
    return lambda args: run_module(port_listeners.main, args)


@pytest.fixture
def little_endian(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture tables are little-endian; make the module read them so on any machine."""
    original = port_listeners.find_listeners
    monkeypatch.setattr(
        port_listeners, "find_listeners", lambda proc_path, wanted: original(proc_path, wanted, "little")
    )


class TestModule:
    @pytest.mark.parametrize("check_mode", [False, True])
    def test_reports_listeners(self, run, proc: Path, little_endian: None, check_mode: bool) -> None:
        result = run({
            "ports": [{"port": 6443}, {"port": 8472, "protocol": "udp"}, {"port": 16443}],
            "proc_path": str(proc),
            "_ansible_check_mode": check_mode,
        })
        assert result["changed"] is False
        assert "failed" not in result
        assert result["listeners"] == [
            listener(6443, "tcp", "0.0.0.0", 1001),
            listener(6443, "tcp", "::1", 0),
            listener(6443, "tcp", "::ffff:192.0.2.10", 1002),
            listener(8472, "udp", "0.0.0.0", 1001),
            listener(8472, "udp", "::", 1002),
        ]

    def test_root_has_a_name(self, run, proc: Path, little_endian: None) -> None:
        result = run({"ports": [{"port": 6443}], "proc_path": str(proc)})
        assert [item["user"] for item in result["listeners"] if item["uid"] == 0] == ["root"]

    def test_free_ports(self, run, proc: Path, little_endian: None) -> None:
        result = run({"ports": [{"port": 16443}, {"port": 18472, "protocol": "udp"}], "proc_path": str(proc)})
        assert result["changed"] is False and result["listeners"] == []

    def test_a_kernel_without_ipv6(self, run, proc: Path, little_endian: None) -> None:
        (proc / "net" / "tcp6").unlink()
        (proc / "net" / "udp6").unlink()
        result = run({"ports": [{"port": 10250}, {"port": 6443}], "proc_path": str(proc)})
        assert result["listeners"] == [listener(6443, "tcp", "0.0.0.0", 1001)]

    def test_fails_when_a_protocol_cannot_be_read(self, run, proc: Path, little_endian: None) -> None:
        (proc / "net" / "udp").unlink()
        (proc / "net" / "udp6").unlink()
        result = run({"ports": [{"port": 6443}, {"port": 8472, "protocol": "udp"}], "proc_path": str(proc)})
        assert result["failed"] is True
        assert result["msg"] == "Cannot read %s/net/udp or %s/net/udp6, so the udp listeners are unknown." % (
            proc, proc
        )

    @pytest.mark.parametrize("port", [0, 65536, -1])
    def test_port_out_of_range(self, run, proc: Path, port: int) -> None:
        result = run({"ports": [{"port": port}, {"port": 6443}], "proc_path": str(proc)})
        assert result["failed"] is True
        assert result["msg"] == "ports must be from 1 to 65535, got %d." % port

    def test_unknown_protocol(self, run, proc: Path) -> None:
        result = run({"ports": [{"port": 6443, "protocol": "sctp"}], "proc_path": str(proc)})
        assert result["failed"] is True and "protocol" in result["msg"]


@pytest.fixture
def tcp_listener() -> t.Iterator[tuple[str, int]]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()


@pytest.fixture
def udp_socket() -> t.Iterator[tuple[str, int]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")
class TestThisMachine:
    def test_reports_a_listening_socket_of_this_process(self, run, tcp_listener, udp_socket) -> None:
        """Reads the real /proc (its byte order is this machine's)."""
        address, port = tcp_listener
        udp_address, udp_port = udp_socket
        result = run({"ports": [{"port": port}, {"port": udp_port, "protocol": "udp"}]})
        uid = os.getuid()
        assert listener(port, "tcp", address, uid) in result["listeners"]
        assert listener(udp_port, "udp", udp_address, uid) in result["listeners"]

    def test_a_closed_socket_is_gone(self, run) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            assert run({"ports": [{"port": port}]})["listeners"] != []
        assert run({"ports": [{"port": port}]})["listeners"] == []

    @pytest.mark.skipif(not socket.has_ipv6 or not os.path.exists("/proc/net/tcp6"), reason="needs IPv6")
    def test_ipv6_listener(self, run) -> None:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("::1", 0))
            except OSError:
                pytest.skip("no IPv6 loopback")
            sock.listen()
            port = sock.getsockname()[1]
            assert run({"ports": [{"port": port}]})["listeners"] == [listener(port, "tcp", "::1", os.getuid())]
