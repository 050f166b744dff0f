# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""What the kubeadm role may do to a node without its completion marker, for every state the probe can report."""

from __future__ import annotations

import itertools

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.kubeadm_state import (
    ADMIN_CONF,
    CLUSTER_DATA,
    INIT_MARKER,
    JOIN_MARKER,
    KUBELET_CONF,
    PROBE_KEYS,
    init_decision,
    join_decision,
)

CONTEXT = {"host": "host1", "container": "u7s-node", "cli": "docker", "user": "u7s"}
DATA_KEYS = [key for key, _path, _what in CLUSTER_DATA]
PATHS = dict((key, path) for key, path, _what in CLUSTER_DATA)


def probe(**flags: bool) -> dict:
    return {**{key: False for key in PROBE_KEYS}, **flags}


# --- init: every combination of the marker, the API and the four kinds of cluster data ----------

INIT_STATES = [dict(zip(["init_marker", "api_ready"] + DATA_KEYS, values))
               for values in itertools.product([False, True], repeat=2 + len(DATA_KEYS))]


@pytest.mark.parametrize("state", INIT_STATES, ids=lambda state: ",".join(k for k, v in state.items() if v) or "nothing")
def test_init_decision_for_every_state(state):
    decision = init_decision(probe(**state), CONTEXT)
    found = [PATHS[key] for key in DATA_KEYS if state[key]]
    if state["init_marker"]:
        expected = "done"
    elif state["api_ready"]:
        expected = "adopt"
    elif found:
        expected = "refuse"
    else:
        expected = "init"
    assert decision["action"] == expected
    # Only a node without any cluster data is ever reset (the role resets only on "init").
    if decision["action"] == "init":
        assert not found and not state["api_ready"]
    if expected in ("adopt", "refuse"):
        assert decision["found"] == found
        assert decision["message"].startswith("host1: ")
    else:
        assert decision["found"] == [] and decision["message"] == ""


def test_a_refusal_names_the_host_what_was_found_why_and_a_fix_that_destroys_nothing_by_itself():
    message = init_decision(probe(etcd_member=True, admin_conf=True), CONTEXT)["message"]
    assert message.startswith("host1: kubeadm init was not marked complete in the node container u7s-node")
    assert INIT_MARKER in message
    assert "/var/lib/etcd/member (etcd's data)" in message and ADMIN_CONF + " (the cluster's admin kubeconfig)" in message
    assert "/etc/kubernetes/pki/ca.key" not in message
    assert "does not answer /readyz" in message
    assert "Nothing was reset" in message
    fix = message.split("Fix: ", 1)[1]
    assert fix.index("`docker exec u7s-node systemctl status kubelet`") < fix.index("re-run")
    assert "`docker exec u7s-node journalctl -u kubelet -n 100`" in fix
    # The destructive command comes last, for who means to discard the control plane.
    assert fix.index("if you mean to discard this control plane") < fix.index("`docker exec u7s-node kubeadm reset --force`")
    assert "as the cluster user u7s" in fix


def test_a_refusal_names_the_engine_and_container_of_the_node():
    message = init_decision(probe(ca_key=True), {**CONTEXT, "cli": "podman", "container": "n1"})["message"]
    assert "`podman exec n1 kubeadm reset --force`" in message
    assert "/etc/kubernetes/pki/ca.key (the cluster CA's key, which the joined nodes trust)" in message


def test_an_adoption_says_nothing_was_reset():
    message = init_decision(probe(api_ready=True, etcd_member=True, admin_conf=True), CONTEXT)["message"]
    assert message.startswith("host1: kubeadm init was not marked complete")
    assert "adopted the running control plane" in message
    assert "nothing was reset or initialized" in message


def test_a_marked_node_needs_no_other_key():
    """The probe reports everything, but the marker alone decides."""
    assert init_decision({"init_marker": True}, CONTEXT)["action"] == "done"
    assert join_decision({"join_marker": True}, None, CONTEXT)["action"] == "done"


@pytest.mark.parametrize("bad", [{}, {"init_marker": "false"}, {"init_marker": False},
                                 probe(etcd_member=None), probe(api_ready="yes")],
                         ids=["empty", "marker-text", "no-data-keys", "none", "text"])
def test_init_refuses_a_probe_it_does_not_understand(bad):
    with pytest.raises(ValueError, match="the node probe must report"):
        init_decision(bad, CONTEXT)


@pytest.mark.parametrize("key", ["host", "container", "cli", "user"])
def test_the_context_must_name_everything_the_messages_use(key):
    with pytest.raises(ValueError, match="the context must name %s" % key):
        init_decision(probe(), {**CONTEXT, key: ""})


# --- join: the marker, kubelet.conf and whether the API knows the node -----------------------

@pytest.mark.parametrize(("marker", "kubelet_conf", "registered", "expected"), [
    (True, True, True, "done"), (True, True, False, "done"), (True, False, None, "done"), (True, True, None, "done"),
    (False, False, None, "join"), (False, False, True, "join"), (False, False, False, "join"),
    (False, True, True, "adopt"),
    (False, True, False, "join"),
])
def test_join_decision_for_every_state(marker, kubelet_conf, registered, expected):
    decision = join_decision(probe(join_marker=marker, kubelet_conf=kubelet_conf), registered,
                             {**CONTEXT, "host": "host2"})
    assert decision["action"] == expected
    if expected == "adopt":
        assert decision["found"] == [KUBELET_CONF]
        assert decision["message"] == (
            "host2: kubeadm join was not marked complete (%s is missing), but the node has %s and the API knows it: "
            "adopted the joined node (wrote the marker); nothing was reset or joined again." % (JOIN_MARKER, KUBELET_CONF))
    else:
        assert decision["message"] == ""


@pytest.mark.parametrize("registered", [None, "true", 1])
def test_join_needs_a_yes_or_no_from_the_api_for_a_node_with_a_kubelet_conf(registered):
    """A node that may be in the cluster is never reset on a guess."""
    with pytest.raises(ValueError, match="host1 has /etc/kubernetes/kubelet.conf without a join marker"):
        join_decision(probe(kubelet_conf=True), registered, CONTEXT)
