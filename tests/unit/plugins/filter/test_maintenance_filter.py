# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The certificate and etcd filters through Ansible's templating, as the kubeadm role's tasks use them."""

from __future__ import annotations

import typing as t

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.u7s.cluster.plugins.filter.maintenance import FilterModule


def templated(expression: str, **variables: t.Any) -> t.Any:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template("{{ " + expression + " }}"))


def test_filters_are_registered():
    assert sorted(FilterModule().filters()) == ["etcd_restore_refusal", "etcd_snapshot_name",
                                                "etcd_static_pod_member", "kubeadm_certs_expiration"]


def test_certs_expiration_with_now():
    stdout = ("CERTIFICATE   EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED\n"
              "apiserver     Aug 19, 2026 09:03 UTC   364d            ca                      no\n")
    certs = templated("stdout | u7s.cluster.kubeadm_certs_expiration('2025-08-19T09:03:00Z')", stdout=stdout)
    assert certs[0]["days_left"] == 365 and certs[0]["authority"] == "ca"


def test_certs_expiration_errors_are_filter_errors():
    with pytest.raises(AnsibleError, match="kubeadm_certs_expiration: .*no certificate table"):
        templated("'nothing' | u7s.cluster.kubeadm_certs_expiration")
    with pytest.raises(AnsibleError, match="now must be UTC"):
        templated("'x' | u7s.cluster.kubeadm_certs_expiration('yesterday')")


def test_snapshot_name_as_the_backup_names_it():
    name = templated("inventory_hostname | u7s.cluster.etcd_snapshot_name(now(utc=true).strftime('%Y%m%dT%H%M%SZ'))",
                     inventory_hostname="host1")
    assert name.startswith("etcd-host1-") and name.endswith("Z.db") and len(name) == len("etcd-host1-20260101T120000Z.db")
    with pytest.raises(AnsibleError, match="etcd_snapshot_name"):
        templated("'host1' | u7s.cluster.etcd_snapshot_name('now')")


def test_member_from_the_manifests_yaml():
    stdout = ("spec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    - --name=u7s-host1\n"
              "    - --data-dir=/var/lib/etcd\n    - --initial-advertise-peer-urls=https://10.0.0.2:2380\n")
    member = templated("stdout | from_yaml | u7s.cluster.etcd_static_pod_member", stdout=stdout)
    assert member["initial_cluster"] == "u7s-host1=https://10.0.0.2:2380"
    with pytest.raises(AnsibleError, match="etcd_static_pod_member"):
        templated("{} | u7s.cluster.etcd_static_pod_member")


def test_restore_refusal_as_the_restore_asks():
    expression = "snapshot | u7s.cluster.etcd_restore_refusal(found, confirm, 'host1')"
    assert "kubeadm_etcd_restore_snapshot is not set" in templated(expression, snapshot="", found={}, confirm=False)
    assert "kubeadm_etcd_restore_confirm=true" in templated(
        expression, snapshot="/x.db", found={"exists": True, "isreg": True, "size": 9}, confirm=False)
    assert templated(expression, snapshot="/x.db", found={"exists": True, "isreg": True, "size": 9}, confirm=True) == ""
