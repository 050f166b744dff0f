# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The kubeadm decision filters, directly and through Ansible's templating (as init.yml and join.yml use them)."""

from __future__ import annotations

import typing as t

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.u7s.cluster.plugins.filter.kubeadm import (
    FilterModule,
    kubeadm_init_decision,
    kubeadm_join_decision,
)
from ansible_collections.u7s.cluster.plugins.module_utils.kubeadm_state import PROBE_KEYS

CONTEXT = {"host": "host1", "container": "u7s-node", "cli": "docker", "user": "u7s"}
NOTHING = {key: False for key in PROBE_KEYS}


def templated(expression: str, **variables: t.Any) -> t.Any:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template("{{ " + expression + " }}"))


def test_filters_are_registered() -> None:
    assert FilterModule().filters() == {"kubeadm_init_decision": kubeadm_init_decision,
                                        "kubeadm_join_decision": kubeadm_join_decision}


def test_the_probes_output_read_as_yaml_through_templating() -> None:
    stdout = "\n".join("%s: %s" % (key, "true" if key in ("etcd_member", "admin_conf") else "false")
                       for key in PROBE_KEYS)
    decision = templated("stdout | from_yaml | u7s.cluster.kubeadm_init_decision(context)",
                         stdout=stdout, context=CONTEXT)
    assert decision["action"] == "refuse"
    assert decision["found"] == ["/var/lib/etcd/member", "/etc/kubernetes/admin.conf"]


def test_join_through_templating() -> None:
    probe = {**NOTHING, "kubelet_conf": True}
    assert templated("probe | u7s.cluster.kubeadm_join_decision(true, context)",
                     probe=probe, context=CONTEXT)["action"] == "adopt"
    assert templated("probe | u7s.cluster.kubeadm_join_decision(false, context)",
                     probe=probe, context=CONTEXT)["action"] == "join"


@pytest.mark.parametrize(("call", "match"), [
    (lambda: kubeadm_init_decision("marker: true", CONTEXT), "kubeadm_init_decision expects the probe to be a dictionary"),
    (lambda: kubeadm_init_decision(NOTHING, None), "kubeadm_init_decision expects the context to be a dictionary"),
    (lambda: kubeadm_init_decision({"init_marker": False}, CONTEXT), "^kubeadm_init_decision: the node probe must report"),
    (lambda: kubeadm_join_decision({**NOTHING, "kubelet_conf": True}, None, CONTEXT),
     "^kubeadm_join_decision: host1 has /etc/kubernetes/kubelet.conf without a join marker"),
    (lambda: kubeadm_join_decision(NOTHING, None, {}), "^kubeadm_join_decision: the context must name"),
], ids=["probe-text", "no-context", "short-probe", "registered-unknown", "empty-context"])
def test_errors_are_filter_errors(call, match) -> None:
    with pytest.raises(AnsibleFilterError, match=match):
        call()


def test_an_error_through_templating_names_the_filter() -> None:
    with pytest.raises(AnsibleError, match="kubeadm_init_decision"):
        templated("probe | u7s.cluster.kubeadm_init_decision(context)", probe={"init_marker": False}, context=CONTEXT)
