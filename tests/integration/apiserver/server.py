"""Run etcd + kube-apiserver from the offline bundle on loopback, for tests.

No controller-manager, scheduler or kubelet: objects are stored and served,
nothing reconciles them (no service-account tokens, no bootstrap-signer JWS
signatures on cluster-info, no token cleaner). Tests write what they need.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from kubernetes import client

from . import pki as pki_mod
from .bundle import Bundle

SERVICE_CIDR = "10.96.0.0/12"  # kubeadm's default serviceSubnet
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """etcd or kube-apiserver did not become ready; the message carries their log tails."""


@dataclasses.dataclass(frozen=True)
class KubeAPI:
    """What the ``kube_api`` fixture yields: a ready API server and ways to reach it."""

    server: str  # https://127.0.0.1:PORT
    kubeconfig: Path  # admin kubeconfig (system:masters), certs embedded like kubeadm's admin.conf
    ca_cert: Path
    client_cert: Path
    client_key: Path
    api_client: client.ApiClient  # admin client, ready to use
    version: str  # K8S_VERSION pin of the bundle the binaries came from
    service_cidr: str
    workdir: Path  # removed at session end

    def client_configuration(self, **overrides: object) -> client.Configuration:
        """A fresh admin Configuration (or, with overrides, e.g. another identity)."""
        return _configuration(self.server, self.ca_cert, self.client_cert, self.client_key, **overrides)


def _configuration(server: str, ca: Path, cert: Path | None, key: Path | None, **overrides: object) -> client.Configuration:
    cfg = client.Configuration(host=server)
    cfg.ssl_ca_cert = str(ca)
    cfg.cert_file = str(cert) if cert else None
    cfg.key_file = str(key) if key else None
    for name, value in overrides.items():
        setattr(cfg, name, value)
    # The client picks HTTPS_PROXY from the environment; loopback must not go through it.
    cfg.proxy = None
    return cfg


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _i in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child if pytest dies without running teardown."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<{exc}>"


WORKDIR_PREFIX = "u7s-kube-api-"
OWNER_FILE = "owner"  # "<pid> <start time>" of the pytest process that made the dir


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid, names a process even across pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def reap_stale_workdirs() -> list[Path]:
    """Remove work dirs of sessions that were SIGKILLed (their processes died with them via PDEATHSIG).

    Dirs without an owner file are left alone: being created right now, or kept on purpose.
    """
    removed = []
    for d in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            pid, start = (d / OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue
        if _proc_start_time(int(pid)) != start:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


class KubeAPIServer:
    """Owns a temp dir, an etcd and a kube-apiserver process; ``stop()`` removes all of it."""

    def __init__(self, bundle: Bundle, start_timeout: float = 120.0, keep: bool = False) -> None:
        self.bundle = bundle
        self.start_timeout = start_timeout
        self.keep = keep  # leave the work dir for debugging
        reap_stale_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self.workdir / OWNER_FILE).write_text(f"{os.getpid()} {_proc_start_time(os.getpid())}\n")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}
        self.api: KubeAPI | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> KubeAPI:
        t0 = time.monotonic()
        bins = self.bundle.extract(["etcd", "kube-apiserver"], self.workdir / "bin")
        self.timings["extract"] = time.monotonic() - t0
        service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
        t1 = time.monotonic()
        pki = pki_mod.generate(self.workdir / "pki", service_ip)
        self.timings["pki"] = time.monotonic() - t1

        deadline = time.monotonic() + self.start_timeout
        # A port picked free can be taken before the process binds it: retry with new ones.
        for attempt in range(3):
            etcd_client, etcd_peer, api_port = _free_ports(3)
            try:
                t2 = time.monotonic()
                self._start_etcd(bins["etcd"], etcd_client, etcd_peer, deadline)
                self.timings["etcd"] = time.monotonic() - t2
                t3 = time.monotonic()
                server = f"https://127.0.0.1:{api_port}"
                self._start_apiserver(bins["kube-apiserver"], pki, etcd_client, api_port)
                self._wait_readyz(server, pki, deadline)
                self.timings["kube-apiserver"] = time.monotonic() - t3
                break
            except StartError as exc:
                self._stop_processes()
                if attempt == 2 or "address already in use" not in str(exc):
                    raise
                shutil.rmtree(self.workdir / "etcd", ignore_errors=True)

        kubeconfig = self._write_kubeconfig(server, pki)
        api_client = client.ApiClient(_configuration(server, pki.ca_cert, pki.admin_cert, pki.admin_key))
        self.api = KubeAPI(
            server=server, kubeconfig=kubeconfig, ca_cert=pki.ca_cert, client_cert=pki.admin_cert,
            client_key=pki.admin_key, api_client=api_client, version=self.bundle.pins["K8S_VERSION"],
            service_cidr=SERVICE_CIDR, workdir=self.workdir,
        )
        self._wait_namespaces(api_client, deadline)
        self.timings["total"] = time.monotonic() - t0
        return self.api

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        # Own session: a Ctrl-C meant for pytest does not kill them mid-test;
        # teardown stops them, and PDEATHSIG covers pytest itself being killed.
        self.procs[name] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()

    def _start_etcd(self, etcd: Path, client_port: int, peer_port: int, deadline: float) -> None:
        # Plain HTTP on loopback: the apiserver is the only client, and TLS to
        # etcd is not what the collection's modules exercise.
        client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn("etcd", [
            str(etcd), "--name=u7s-test", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=u7s-test={peer_url}", "--initial-cluster-state=new",
            # Throwaway data: skip fsync, it dominates etcd latency on slow disks.
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        while True:
            self._check_alive()
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                conn = http.client.HTTPConnection("127.0.0.1", client_port, timeout=2)
                try:
                    conn.request("GET", "/health")
                    if json.loads(conn.getresponse().read()).get("health") == "true":
                        return
                finally:
                    conn.close()
            if time.monotonic() > deadline:
                raise StartError(self._failure("etcd did not report healthy"))
            time.sleep(0.1)

    def _start_apiserver(self, apiserver: Path, pki: pki_mod.Pki, etcd_port: int, port: int) -> None:
        self._spawn("kube-apiserver", [
            str(apiserver),
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            # Written into nothing (reconciler off) but must be set: without it
            # the apiserver looks for a default-route interface address.
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--client-ca-file={pki.ca_cert}",
            f"--tls-cert-file={pki.apiserver_cert}", f"--tls-private-key-file={pki.apiserver_key}",
            f"--cert-dir={self.workdir / 'cert-dir'}",  # never the default /var/run/kubernetes
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # As kubeadm configures it; join tokens authenticate as system:bootstrap:<id>
            # and kubeadm join reads cluster-info as system:anonymous.
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--enable-bootstrap-token-auth=true", "--anonymous-auth=true",
            "--allow-privileged=true", "--profiling=false",
        ])

    def _wait_readyz(self, server: str, pki: pki_mod.Pki, deadline: float) -> None:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        port = int(server.rsplit(":", 1)[1])
        last = "no answer yet"
        while True:
            self._check_alive()
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                try:
                    conn.request("GET", "/readyz?verbose")
                    resp = conn.getresponse()
                    body = resp.read().decode(errors="replace")
                finally:
                    conn.close()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}: " + " ".join(l for l in body.splitlines() if "failed" in l)
            except (OSError, http.client.HTTPException) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise StartError(self._failure(f"kube-apiserver /readyz not ok after {self.start_timeout:.0f}s; last: {last}"))
            time.sleep(0.2)

    def _wait_namespaces(self, api_client: client.ApiClient, deadline: float) -> None:
        """The system namespaces appear shortly after /readyz; tests must not race them."""
        core = client.CoreV1Api(api_client)
        while True:
            names = {ns.metadata.name for ns in core.list_namespace().items}
            if set(SYSTEM_NAMESPACES) <= names:
                return
            if time.monotonic() > deadline:
                raise StartError(self._failure(f"system namespaces missing: {sorted(set(SYSTEM_NAMESPACES) - names)}"))
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StartError(self._failure(f"{name} exited with rc={proc.returncode} during start"))

    def _failure(self, what: str) -> str:
        logs = "\n".join(f"--- {name}.log (last lines) ---\n{_tail(self.workdir / f'{name}.log')}" for name in self.procs)
        return f"{what}\n{logs}"

    def _write_kubeconfig(self, server: str, pki: pki_mod.Pki) -> Path:
        """An admin.conf-style kubeconfig with the certificates embedded (one file to hand over)."""
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        cfg = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "u7s-test", "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)}}],
            "users": [{"name": "u7s-test-admin", "user": {"client-certificate-data": b64(pki.admin_cert),
                                                          "client-key-data": b64(pki.admin_key)}}],
            "contexts": [{"name": "u7s-test-admin@u7s-test", "context": {"cluster": "u7s-test", "user": "u7s-test-admin"}}],
            "current-context": "u7s-test-admin@u7s-test",
        }
        path = self.workdir / "admin.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        return path

    # ------------------------------------------------------------------ stop

    def _stop_processes(self) -> None:
        # apiserver first, so it does not log etcd errors while shutting down.
        for name in ("kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop both processes and remove the work dir; raise if anything is left behind."""
        pids = [p.pid for p in self.procs.values()]
        if self.api is not None:
            self.api.api_client.close()
        self._stop_processes()
        if self.keep:
            (self.workdir / OWNER_FILE).unlink(missing_ok=True)  # not reaped later either
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if left or (not self.keep and self.workdir.exists()):
            raise RuntimeError(f"test API server left behind pids={left} dir={self.workdir if self.workdir.exists() else None}")


@contextlib.contextmanager
def running(bundle: Bundle, start_timeout: float = 120.0, keep: bool = False) -> Iterator[KubeAPIServer]:
    """Start a server; always stop it and remove its files, also when start fails."""
    srv = KubeAPIServer(bundle, start_timeout=start_timeout, keep=keep)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
