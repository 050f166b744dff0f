# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""bypass4netns for the node: the decision per host, the ignored networks, nerdctl's annotations."""

from __future__ import annotations

import json

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils import bypass4netns

MODERN = "6.12.48+deb13-amd64"
OLD = "5.4.0-216-generic"


@pytest.mark.parametrize(("release", "version"), [
    ("6.12.48+deb13-amd64", (6, 12)),
    ("5.9.0", (5, 9)),
    ("5.10.0-35-cloud-amd64", (5, 10)),
    ("4.18.0-553.el8_10.x86_64", (4, 18)),
    (" 6.1.0-18-amd64\n", (6, 1)),
    ("", None),
    ("linux", None),
    (None, None),
    (6, None),
])
def test_kernel_version(release, version):
    assert bypass4netns.kernel_version(release) == version


@pytest.mark.parametrize(("setting", "engine", "kernel", "enabled"), [
    ("auto", "nerdctl", MODERN, True),
    ("auto", "nerdctl", "5.9.0", True),
    ("auto", "nerdctl", "5.8.18", False),
    ("auto", "nerdctl", OLD, False),
    # No facts: auto cannot know, and stays off.
    ("auto", "nerdctl", None, False),
    ("auto", "docker", MODERN, False),
    ("auto", "podman", MODERN, False),
    ("false", "nerdctl", MODERN, False),
    ("false", "docker", OLD, False),
    ("true", "nerdctl", MODERN, True),
    # A host outside the run (no facts): taken on trust, its node is not touched.
    ("true", "nerdctl", None, True),
])
def test_the_decision(setting, engine, kernel, enabled):
    assert bypass4netns.decide("node1", setting, engine, kernel) == bypass4netns.Decision(enabled)


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_true_with_another_engine_is_refused_naming_host_variable_and_fix(engine):
    decision = bypass4netns.decide("node7", "true", engine, MODERN)
    assert decision.enabled is False
    message = decision.refusal
    assert message.startswith("Host node7: u7s_bypass4netns is true, but its u7s_engine is %s" % engine)
    assert "Fix: set u7s_bypass4netns to auto" in message and "or false for host node7" in message
    assert "u7s_engine to nerdctl" in message


@pytest.mark.parametrize("kernel", [OLD, "5.8.18", "4.19.0-27-amd64"])
def test_true_on_an_old_kernel_is_refused_naming_host_kernel_and_fix(kernel):
    decision = bypass4netns.decide("node2", "true", "nerdctl", kernel)
    assert decision.enabled is False
    message = decision.refusal
    assert message.startswith("Host node2: u7s_bypass4netns is true, but the host runs Linux %s" % kernel)
    assert "5.9 or later" in message and "SECCOMP_IOCTL_NOTIF_ADDFD" in message
    assert "Fix: boot host node2 with a newer kernel, or set u7s_bypass4netns to auto" in message


def test_an_unknown_setting_is_an_error():
    with pytest.raises(ValueError):
        bypass4netns.decide("node1", "yes", "nerdctl", MODERN)


def test_the_ignored_networks_are_the_clusters_own_and_loopback():
    assert bypass4netns.ignore_subnets("10.244.0.0/16", "10.96.0.0/16", ["10.100.0.0/16", "10.100.3.0/24"]) == [
        "0.0.0.0/32", "10.96.0.0/16", "10.100.0.0/16", "10.244.0.0/16", "127.0.0.0/8", "::/127"]


def test_the_ignored_networks_keep_a_node_subnet_outside_the_pool_and_merge_neighbours():
    subnets = bypass4netns.ignore_subnets("10.244.0.0/17", "10.244.128.0/17", ["10.100.0.0/16", "172.31.9.0/24"])
    assert subnets == ["0.0.0.0/32", "10.100.0.0/16", "10.244.0.0/16", "127.0.0.0/8", "172.31.9.0/24", "::/127"]


def test_the_ignored_networks_are_the_same_whatever_the_order():
    one = bypass4netns.ignore_subnets("10.244.0.0/16", "10.96.0.0/16", ["10.100.1.0/24", "10.100.0.0/24"])
    other = bypass4netns.ignore_subnets("10.244.0.0/16", "10.96.0.0/16", ["10.100.0.0/24", "10.100.1.0/24"])
    assert one == other == ["0.0.0.0/32", "10.96.0.0/16", "10.100.0.0/23", "10.244.0.0/16", "127.0.0.0/8", "::/127"]


def test_the_annotations_are_nerdctls():
    """The names of nerdctl v2.2.0's pkg/annotations/annotations.go; the subnets as a JSON list of strings."""
    annotations = bypass4netns.annotations(["10.96.0.0/16", "10.244.0.0/16", "127.0.0.0/8", "::1/128"])
    assert annotations == {
        "nerdctl/bypass4netns": "true",
        "nerdctl/bypass4netns-ignore-bind": "true",
        "nerdctl/bypass4netns-ignore-subnets": '["10.96.0.0/16","10.244.0.0/16","127.0.0.0/8","::1/128"]',
    }
    assert json.loads(annotations["nerdctl/bypass4netns-ignore-subnets"]) == [
        "10.96.0.0/16", "10.244.0.0/16", "127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize("subnets", ["10.244.0.0/16", ["10.244.0.0/16", ""], [None]])
def test_the_annotations_want_a_list_of_networks(subnets):
    with pytest.raises(ValueError):
        bypass4netns.annotations(subnets)


def test_a_network_inside_another_is_merged_into_it():
    """A service network that holds the node subnets (10.96.0.0/12 holds 10.100.0.0/16) is listed once."""
    assert bypass4netns.ignore_subnets("10.244.0.0/16", "10.96.0.0/12", ["10.100.0.0/16"]) == [
        "0.0.0.0/32", "10.96.0.0/12", "10.244.0.0/16", "127.0.0.0/8", "::/127"]
