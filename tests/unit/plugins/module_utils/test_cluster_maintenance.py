# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Certificate expiry parsing, snapshot names, etcd's member from its manifest and the restore's refusals."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_maintenance import (
    certificate_expiration,
    etcd_member,
    restore_refusal,
    snapshot_name,
)

CHECK_EXPIRATION = """\
[check-expiration] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...
[check-expiration] Use 'kubeadm init phase upload-config --config your-config-file' to re-upload it.

CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED
admin.conf                 Aug 19, 2026 09:03 UTC   364d            ca                      no
apiserver                  Aug 19, 2026 09:03 UTC   364d            ca                      no
apiserver-etcd-client      Aug 19, 2026 09:03 UTC   364d            etcd-ca                 no
apiserver-kubelet-client   Aug 19, 2026 09:03 UTC   364d            ca                      no
controller-manager.conf    Aug 19, 2026 09:03 UTC   364d            ca                      no
etcd-healthcheck-client    Aug 19, 2026 09:03 UTC   364d            etcd-ca                 no
etcd-peer                  Aug 19, 2026 09:03 UTC   364d            etcd-ca                 no
etcd-server                Aug 19, 2026 09:03 UTC   364d            etcd-ca                 no
front-proxy-client         Aug 19, 2026 09:03 UTC   364d            front-proxy-ca          no
scheduler.conf             Aug 19, 2026 09:03 UTC   364d            ca                      yes
super-admin.conf           Aug 20, 2025 09:03 UTC   <invalid>       ca                      no
!MISSING! front-proxy-extra

CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED
ca                      Aug 17, 2035 09:03 UTC   9y              no
etcd-ca                 Aug 17, 2035 09:03 UTC   9y              no
front-proxy-ca          Aug 17, 2035 09:03 UTC   9y              no
"""
NOW = datetime.datetime(2025, 8, 20, 12, 0, tzinfo=datetime.timezone.utc)


def test_every_certificate_and_authority_is_listed_in_order():
    entries = certificate_expiration(CHECK_EXPIRATION, NOW)
    assert [e["name"] for e in entries] == [
        "admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "controller-manager.conf",
        "etcd-healthcheck-client", "etcd-peer", "etcd-server", "front-proxy-client", "scheduler.conf",
        "super-admin.conf", "front-proxy-extra", "ca", "etcd-ca", "front-proxy-ca"]
    assert [e["kind"] for e in entries] == ["certificate"] * 12 + ["authority"] * 3


def test_a_certificate_entry():
    apiserver = certificate_expiration(CHECK_EXPIRATION, NOW)[1]
    assert apiserver == {
        "name": "apiserver", "kind": "certificate", "expires": "2026-08-19T09:03:00Z", "residual": "364d",
        "authority": "ca", "externally_managed": False, "missing": False, "days_left": 363,
        "summary": "apiserver: expires 2026-08-19T09:03:00Z (364d), signed by ca"}


def test_an_authority_entry_has_no_signer():
    etcd_ca = certificate_expiration(CHECK_EXPIRATION, NOW)[-2]
    assert etcd_ca["name"] == "etcd-ca" and etcd_ca["authority"] is None and etcd_ca["expires"] == "2035-08-17T09:03:00Z"
    assert etcd_ca["summary"] == "etcd-ca: expires 2035-08-17T09:03:00Z (9y), certificate authority"


def test_expired_externally_managed_and_missing():
    entries = {e["name"]: e for e in certificate_expiration(CHECK_EXPIRATION, NOW)}
    assert entries["super-admin.conf"]["days_left"] == -1
    assert entries["super-admin.conf"]["summary"].startswith("super-admin.conf: EXPIRED 2025-08-20T09:03:00Z")
    assert entries["scheduler.conf"]["externally_managed"] is True
    assert "externally managed" in entries["scheduler.conf"]["summary"]
    assert entries["front-proxy-extra"]["missing"] is True and entries["front-proxy-extra"]["expires"] is None


def test_kubeadms_trailing_blanks_change_nothing():
    padded = CHECK_EXPIRATION.replace(" no\n", " no      \n").replace(" yes\n", " yes     \n")
    assert certificate_expiration(padded, NOW) == certificate_expiration(CHECK_EXPIRATION, NOW)


def test_without_now_there_are_no_days_left():
    assert "days_left" not in certificate_expiration(CHECK_EXPIRATION)[0]


def test_an_older_kubeadm_without_the_authority_column():
    old = ("CERTIFICATE   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED\n"
           "apiserver     May 15, 2020 13:00 UTC   364d            no\n")
    assert certificate_expiration(old)[0]["authority"] is None


@pytest.mark.parametrize("output", ["", "error: something\n", None, 3])
def test_no_table_is_an_error(output):
    with pytest.raises(ValueError):
        certificate_expiration(output)


def test_an_unreadable_line_is_an_error():
    with pytest.raises(ValueError, match="cannot read"):
        certificate_expiration("CERTIFICATE   EXPIRES\napi server  Aug 19, 2026 09:03 UTC  364d ca no\n")


def test_snapshot_name():
    assert snapshot_name("host1", "20260101T120000Z") == "etcd-host1-20260101T120000Z.db"


@pytest.mark.parametrize("host,timestamp", [("", "20260101T120000Z"), ("../x", "20260101T120000Z"),
                                            ("a b", "20260101T120000Z"), ("host1", "2026-01-01"),
                                            ("host1", "20260101T120000"), (None, None)])
def test_a_bad_snapshot_name_is_refused(host, timestamp):
    with pytest.raises(ValueError):
        snapshot_name(host, timestamp)


MANIFEST = {"spec": {"containers": [{"name": "etcd", "image": "registry.k8s.io/etcd:3.6.8-0", "command": [
    "etcd", "--advertise-client-urls=https://10.100.0.2:2379", "--data-dir=/var/lib/etcd",
    "--initial-advertise-peer-urls=https://10.100.0.2:2380",
    "--initial-cluster=u7s-host1=https://10.100.0.2:2380", "--name=u7s-host1"]}]}}


def test_etcd_member_from_the_manifest():
    assert etcd_member(MANIFEST) == {"name": "u7s-host1", "data_dir": "/var/lib/etcd",
                                     "peer_url": "https://10.100.0.2:2380",
                                     "initial_cluster": "u7s-host1=https://10.100.0.2:2380",
                                     "image": "registry.k8s.io/etcd:3.6.8-0"}


def test_etcd_member_without_initial_cluster_is_rebuilt():
    command = [arg for arg in MANIFEST["spec"]["containers"][0]["command"] if not arg.startswith("--initial-cluster=")]
    manifest = {"spec": {"containers": [{"name": "etcd", "command": command}]}}
    assert etcd_member(manifest)["initial_cluster"] == "u7s-host1=https://10.100.0.2:2380"


@pytest.mark.parametrize("manifest,match", [
    ("text", "dictionary"),
    ({"spec": {"containers": [{"name": "other"}]}}, "no container named etcd"),
    ({"spec": {"containers": [{"name": "etcd", "command": "etcd --name=x"}]}}, "list of strings"),
    ({"spec": {"containers": [{"name": "etcd", "command": ["etcd", "--name=x"]}]}}, "--data-dir"),
])
def test_a_manifest_etcd_cannot_be_read_from(manifest, match):
    with pytest.raises(ValueError, match=match):
        etcd_member(manifest)


FOUND = {"exists": True, "isreg": True, "size": 4096}


@pytest.mark.parametrize("snapshot,found,confirm,words", [
    ("", {}, True, "kubeadm_etcd_restore_snapshot is not set"),
    (None, {}, True, "kubeadm_etcd_restore_snapshot is not set"),
    ("/b/x.db", {"exists": False}, True, "does not exist on the controller"),
    ("/b", {"exists": True, "isreg": False}, True, "not a regular file"),
    ("/b/x.db", {"exists": True, "isreg": True, "size": 0}, True, "is empty"),
    ("/b/x.db", FOUND, False, "kubeadm_etcd_restore_confirm=true"),
    ("/b/x.db", FOUND, "no", "kubeadm_etcd_restore_confirm=true"),
])
def test_restore_refusals_name_the_host_and_a_fix(snapshot, found, confirm, words):
    message = restore_refusal(snapshot, found, confirm, "host1")
    assert message.startswith("host1: ") and words in message and "Fix:" in message
    assert "nothing was changed" in message


@pytest.mark.parametrize("confirm", [True, "true", "yes", "True"])
def test_a_confirmed_restore_of_a_file_may_go_on(confirm):
    assert restore_refusal("/b/x.db", FOUND, confirm, "host1") == ""
