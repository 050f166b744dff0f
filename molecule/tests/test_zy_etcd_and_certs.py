"""Certificates and etcd backup/restore on the running two-host cluster (issue 9, items 5 and 6).

Runs after the other checks and before test_zz_* (file order): the control plane is restarted
twice. A: playbooks/certs.yml reports every certificate read-only (changed=0), then renews them;
the API server then serves a certificate with a later notAfter (or another serial), the refreshed
controller kubeconfig works, the nodes are Ready. B: a ConfigMap, playbooks/etcd-backup.yml (a
0600 timestamped file in a new 0700 directory), the ConfigMap deleted and another created,
etcd-restore.yml refused without consent, then run with it: the first ConfigMap is back, the
second gone, the nodes Ready. About 5 minutes.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
import subprocess
import urllib.parse
import uuid

import pytest
from cluster_helpers import recap, run_playbook, wait_for
from testinfra.utils.ansible_runner import AnsibleRunner


def playbook(name: str, *extra: str) -> subprocess.CompletedProcess:
    """Run playbooks/<name> with each of extra as an extra variable (-e)."""
    return run_playbook(name, *[arg for value in extra for arg in ("-e", value)], timeout=600)


def succeeded(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The recap's changed count per host, after asserting the run succeeded."""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = recap(result.stdout)
    assert counts and all(c["unreachable"] == 0 and c["failed"] == 0 for c in counts.values()), counts
    return {host: c["changed"] for host, c in counts.items()}


def flat(stdout: str) -> str:
    return " ".join(stdout.split()).replace("''", "'")


@pytest.fixture(scope="module")
def control_plane() -> str:
    return AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("control_plane")[0]


def kubeconfig() -> str:
    return os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "kubeconfig")


def served_certificate(api) -> tuple:
    """notAfter and serial of the certificate the API server serves."""
    x509 = pytest.importorskip("cryptography.x509")
    url = urllib.parse.urlsplit(api.configuration.host)
    pem = ssl.get_server_certificate((url.hostname, url.port or 443), timeout=10)
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.not_valid_after_utc, cert.serial_number


def nodes_ready(core) -> bool:
    nodes = core.list_node().items
    return len(nodes) >= 2 and all(
        any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []) for node in nodes)


def fresh_core():
    """A client from the kubeconfig file as it is now (the session's kept the old one)."""
    from kubernetes import client, config  # pylint: disable=import-outside-toplevel
    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig()))


# --- A: certificates ------------------------------------------------------------------------------

def test_certificates_are_reported_read_only_then_renewed(api, control_plane):
    before = served_certificate(api)

    report = playbook("certs.yml")
    changed = succeeded(report)
    assert set(changed.values()) == {0}, changed
    printed = flat(report.stdout)
    for name in ("admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client",
                 "controller-manager.conf", "etcd-healthcheck-client", "etcd-peer", "etcd-server",
                 "front-proxy-client", "scheduler.conf", "ca", "etcd-ca", "front-proxy-ca"):
        assert re.search(r"['\"]%s: expires \d{4}-\d\d-\d\dT" % re.escape(name), printed), name

    renew = playbook("certs.yml", "kubeadm_certs_renew=true")
    assert succeeded(renew)[control_plane] > 0

    def renewed():
        cert = served_certificate(api)
        return cert if cert != before else None

    after = wait_for("the API server to serve its renewed certificate", renewed, timeout=120)
    assert after[0] > before[0] or after[1] != before[1], (before, after)
    assert after[0] >= before[0]

    # The refreshed kubeconfig (a renewed admin client certificate) works and stays private.
    assert stat.S_IMODE(os.stat(kubeconfig()).st_mode) == 0o600
    core = fresh_core()
    assert core.read_namespace("kube-system").metadata.name == "kube-system"
    wait_for("every node Ready after the renewal", lambda: nodes_ready(core), timeout=180)


# --- B: etcd backup and restore -------------------------------------------------------------------

def test_etcd_backup_and_restore_bring_back_a_deleted_configmap(control_plane, tmp_path):
    core = fresh_core()
    kept, later = f"u7s-backup-{uuid.uuid4().hex[:6]}", f"u7s-after-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map("default", {"metadata": {"name": kept}, "data": {"proof": "before"}})

    backups = tmp_path / "new" / "etcd-backups"
    backup = playbook("etcd-backup.yml", f"kubeadm_etcd_backup_dir={backups}")
    assert succeeded(backup)[control_plane] > 0
    files = list(backups.iterdir())
    assert len(files) == 1, files
    snapshot = files[0]
    assert re.fullmatch(r"etcd-%s-\d{8}T\d{6}Z\.db" % re.escape(control_plane), snapshot.name)
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert snapshot.stat().st_size > 100_000
    assert str(snapshot) in flat(backup.stdout)

    core.delete_namespaced_config_map(kept, "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": later}, "data": {"proof": "after"}})

    refused = playbook("etcd-restore.yml", f"kubeadm_etcd_restore_snapshot={snapshot}")
    assert refused.returncode != 0
    assert "Fix: if that is what you want, add -e kubeadm_etcd_restore_confirm=true" in flat(refused.stdout + refused.stderr)
    assert core.read_namespaced_config_map(later, "default").data == {"proof": "after"}

    restore = playbook("etcd-restore.yml", f"kubeadm_etcd_restore_snapshot={snapshot}", "kubeadm_etcd_restore_confirm=true")
    assert succeeded(restore)[control_plane] > 0
    assert re.search(r"The previous member is in /var/lib/etcd-before-restore-\d{8}T\d{6}Z/member",
                     flat(restore.stdout))

    core = fresh_core()
    restored = wait_for(f"ConfigMap {kept} back", lambda: next(
        (cm for cm in core.list_namespaced_config_map("default").items if cm.metadata.name == kept), None), timeout=120)
    assert restored.data == {"proof": "before"}
    assert later not in {cm.metadata.name for cm in core.list_namespaced_config_map("default").items}
    wait_for("every node Ready after the restore", lambda: nodes_ready(core), timeout=240)
    core.delete_namespaced_config_map(kept, "default")
