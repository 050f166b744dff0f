# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters of the kubeadm role's certificate and etcd entry points (docs in the .yml files beside this one)."""

from __future__ import annotations

import datetime
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_maintenance import (
    certificate_expiration,
    etcd_member,
    restore_refusal,
    snapshot_name,
)


def _now(value: t.Any) -> datetime.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value
    try:
        return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise AnsibleFilterError("kubeadm_certs_expiration: now must be UTC as YYYY-MM-DDTHH:MM:SSZ, got %r." % (value,)) from None


def kubeadm_certs_expiration(output: t.Any, now: t.Any = None) -> list[dict[str, t.Any]]:
    """The certificates `kubeadm certs check-expiration` lists, as dictionaries."""
    try:
        return certificate_expiration(output, _now(now))
    except ValueError as exc:
        raise AnsibleFilterError("kubeadm_certs_expiration: %s" % exc) from None


def etcd_snapshot_name(host: t.Any, timestamp: t.Any) -> str:
    """etcd-<host>-<UTC timestamp>.db."""
    try:
        return snapshot_name(host, timestamp)
    except ValueError as exc:
        raise AnsibleFilterError("etcd_snapshot_name: %s" % exc) from None


def etcd_static_pod_member(manifest: t.Any) -> dict[str, str]:
    """The member kubeadm's etcd static pod runs as."""
    try:
        return etcd_member(manifest)
    except ValueError as exc:
        raise AnsibleFilterError("etcd_static_pod_member: %s" % exc) from None


def etcd_restore_refusal(snapshot: t.Any, found: t.Any, confirm: t.Any, host: t.Any) -> str:
    """Why a restore must not start, or ''."""
    return restore_refusal(snapshot, found, confirm, str(host))


class FilterModule:
    """u7s.cluster certificate and etcd filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "kubeadm_certs_expiration": kubeadm_certs_expiration,
            "etcd_snapshot_name": etcd_snapshot_name,
            "etcd_static_pod_member": etcd_static_pod_member,
            "etcd_restore_refusal": etcd_restore_refusal,
        }
