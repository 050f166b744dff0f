# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""u7s_registries: its check (alone and in the cluster plan) and the hosts.toml files it becomes."""

from __future__ import annotations

import base64
import tomllib
import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.registries import (
    RegistriesError,
    controller_files,
    hosts_toml,
    leftovers,
    redacted,
    registry_files,
    registry_problems,
)
from cluster_inventory import plan, records_of

MOUNT = "/u7s/registries"
CA = "/srv/inventory/files/site-ca.pem"
CERT = "/srv/inventory/files/client.pem"
KEY = "/srv/inventory/files/client-key.pem"

SITE = {
    "docker.io": {
        "mirrors": [
            {"url": "https://registry.site.example:5000", "ca_file": CA, "username": "pull", "password": "s3cr:t"},
            "http://10.0.0.5:5000",
        ],
    },
    "registry.site.example:5000": {"ca_file": CA, "client_cert_file": CERT, "client_key_file": KEY},
}


def problems_of(value: t.Any, missing: t.Collection[str] = ()) -> list[str]:
    return registry_problems(value, missing)


# --- the check ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    {},
    SITE,
    {"_default": {"mirrors": ["https://mirror.example"], "fallback": False}},
    {"quay.io": {"mirrors": [{"url": "https://mirror.example/v2/quay", "override_path": True}]}},
    {"192.0.2.9:5000": {"username": "u", "password": "p"}},
    {"ghcr.io": {"mirrors": [{"url": "https://m.example", "skip_verify": True}], "fallback": True}},
    {"docker.io": {"mirrors": [], "ca_file": CA}},
], ids=["empty", "site", "default-airgapped", "override-path", "ip-registry", "skip-verify", "own-ca"])
def test_good_values_have_no_problems(value):
    assert problems_of(value) == []


BAD = {
    "not-a-mapping": (["docker.io"], "not a mapping"),
    "upper-case-key": ({"Docker.io": {"mirrors": ["https://m"]}}, "lower case"),
    "url-as-key": ({"https://docker.io": {"mirrors": ["https://m"]}}, "no scheme, no path"),
    "bad-port-key": ({"r.example:99999": {"mirrors": ["https://m"]}}, "port '99999'"),
    "ipv6-key": ({"[::1]:5000": {"mirrors": ["https://m"]}}, "IPv6"),
    "entry-not-mapping": ({"docker.io": ["https://m"]}, "not a mapping"),
    "empty-entry": ({"docker.io": {}}, "neither mirrors nor"),
    "typo": ({"docker.io": {"mirors": ["https://m"]}}, "'mirors'", "did you mean mirrors?"),
    "mirror-typo": ({"docker.io": {"mirrors": [{"url": "https://m", "ca_fil": CA}]}}, "'ca_fil'", "did you mean ca_file?"),
    "mirrors-not-list": ({"docker.io": {"mirrors": "https://m"}}, "mirrors is 'https://m', not a list"),
    "mirror-not-url": ({"docker.io": {"mirrors": [5000]}}, "neither a URL nor a mapping"),
    "mirror-without-url": ({"docker.io": {"mirrors": [{"ca_file": CA}]}}, "must be a URL"),
    "ftp": ({"docker.io": {"mirrors": ["ftp://m.example"]}}, "must start with https://"),
    "no-scheme": ({"docker.io": {"mirrors": ["m.example:5000"]}}, "must start with https://"),
    "no-host": ({"docker.io": {"mirrors": ["https://"]}}, "names no host"),
    "url-credentials": ({"docker.io": {"mirrors": ["https://u:p@m.example"]}}, "credentials in the URL"),
    "url-query": ({"docker.io": {"mirrors": ["https://m.example/?x=1"]}}, "no query"),
    "url-port": ({"docker.io": {"mirrors": ["https://m.example:0"]}}, "port '0'"),
    "url-bad-host": ({"docker.io": {"mirrors": ["https://m_x.example"]}}, "is not a DNS name"),
    "url-ipv6": ({"docker.io": {"mirrors": ["https://[::1]:5000"]}}, "IPv6"),
    "duplicate-mirror": ({"docker.io": {"mirrors": ["https://m.example", "https://m.example/"]}}, "repeats the URL"),
    "cert-without-key": ({"docker.io": {"mirrors": [{"url": "https://m", "client_cert_file": CERT}]}},
                         "client_cert_file but no client_key_file"),
    "key-without-cert": ({"r.example": {"client_key_file": KEY}}, "client_key_file but no client_cert_file"),
    "user-without-password": ({"r.example": {"username": "u"}}, "username but no password"),
    "password-without-user": ({"docker.io": {"mirrors": [{"url": "https://m", "password": "p"}]}},
                              "password but no username"),
    "colon-in-user": ({"r.example": {"username": "a:b", "password": "p"}}, "without ':'"),
    "numeric-password": ({"r.example": {"username": "u", "password": 1234}}, "password is not a non-empty string"),
    "skip-verify-http": ({"docker.io": {"mirrors": [{"url": "http://m", "skip_verify": True}]}},
                         "sets skip_verify, but its URL is http://"),
    "ca-http": ({"docker.io": {"mirrors": [{"url": "http://m", "ca_file": CA}]}}, "sets ca_file, but its URL is http://"),
    "string-bool": ({"docker.io": {"mirrors": [{"url": "https://m", "skip_verify": "yes"}]}},
                    "skip_verify is 'yes', not a boolean"),
    "string-fallback": ({"docker.io": {"mirrors": ["https://m"], "fallback": "false"}}, "fallback is 'false', not a boolean"),
    "relative-file": ({"r.example": {"ca_file": "files/ca.pem"}}, "a relative path"),
    "fallback-without-mirrors": ({"r.example": {"ca_file": CA, "fallback": False}}, "no mirrors"),
    "fallback-with-own": ({"r.example": {"mirrors": ["https://m"], "ca_file": CA, "fallback": False}},
                          "never contacted"),
    "default-credentials": ({"_default": {"mirrors": ["https://m"], "username": "u", "password": "p"}},
                            "would go to every registry"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_each_mistake_is_named_with_the_setting_and_a_fix(case):
    value, *markers = BAD[case]
    found = problems_of(value)
    matching = [text for text in found if all(marker in text for marker in markers)]
    assert matching, found
    for text in found:
        assert text.startswith("u7s_registries"), text
        assert " Fix: " in text, text


def test_missing_controller_files_are_named():
    found = problems_of(SITE, missing={CA})
    assert len(found) == 2  # the mirror's and the registry's ca_file
    assert all("names %s, which is not a file on the controller" % CA in text for text in found)


def test_a_password_never_appears_in_a_message():
    value = {"r.example": {"username": "a:b", "password": ["hunter2"], "pasword": "hunter3"}}
    text = "\n".join(problems_of(value))
    assert "hunter2" not in text and "hunter3" not in text


def test_controller_files_are_every_file_named_once():
    assert controller_files(SITE) == [CA, CERT, KEY]
    assert controller_files({"x": None, "y": {"mirrors": "no"}}) == []
    assert controller_files("nonsense") == []


# --- the files -----------------------------------------------------------------------------------

DOCKER_IO = '''# Written by u7s.cluster (role registries) from u7s_registries["docker.io"]; edits are overwritten.
server = "https://registry-1.docker.io"

[host."https://registry.site.example:5000"]
  capabilities = ["pull", "resolve"]
  ca = "/u7s/registries/docker.io/mirror1-ca.pem"
  [host."https://registry.site.example:5000".header]
    Authorization = ["Basic cHVsbDpzM2NyOnQ="]

[host."http://10.0.0.5:5000"]
  capabilities = ["pull", "resolve"]
'''


def test_a_docker_hub_mirror_with_ca_and_credentials():
    text, files, credentials = hosts_toml("docker.io", SITE["docker.io"], MOUNT + "/docker.io")
    assert text == DOCKER_IO
    assert base64.b64decode("cHVsbDpzM2NyOnQ=") == b"pull:s3cr:t"  # user:password, the password's colon kept
    assert files == [{"name": "mirror1-ca.pem", "src": CA, "secret": False}]
    assert credentials


def test_a_private_registry_configures_the_server_itself():
    """Its options at the root (the server) and in a [host] table of its own: containerd 1.7 ignores a
    hosts.toml without a [host] table (measured on the test bed: "invalid `host` tree")."""
    text, files, credentials = hosts_toml("registry.site.example:5000", SITE["registry.site.example:5000"],
                                          MOUNT + "/registry.site.example:5000")
    directory = "/u7s/registries/registry.site.example:5000/"
    options = {"ca": directory + "registry-ca.pem",
               "client": [[directory + "registry-client.pem", directory + "registry-client-key.pem"]]}
    assert tomllib.loads(text) == {"server": "https://registry.site.example:5000", **options,
                                   "host": {"https://registry.site.example:5000": options}}
    assert [(item["name"], item["secret"]) for item in files] == [
        ("registry-ca.pem", False), ("registry-client.pem", False), ("registry-client-key.pem", True)]
    assert not credentials


def test_credentials_of_the_registry_itself_are_the_roots_header():
    text, _files, credentials = hosts_toml("r.example", {"username": "u", "password": "p"}, MOUNT + "/r.example")
    parsed = tomllib.loads(text)
    header = {"Authorization": ["Basic dTpw"]}
    assert parsed == {"server": "https://r.example", "header": header,
                      "host": {"https://r.example": {"header": header}}}
    assert credentials


def test_without_fallback_the_last_mirror_takes_the_servers_place():
    """containerd adds the registry itself whenever server is left out; the last mirror is the server
    instead, and a [host] table like every mirror (containerd 1.7 needs one)."""
    last = {"url": "https://b.example:5000/v2/hub", "override_path": True, "skip_verify": True}
    entry = {"mirrors": ["https://a.example", last], "fallback": False}
    text, files, _credentials = hosts_toml("docker.io", entry, MOUNT + "/docker.io")
    last_options = {"capabilities": ["pull", "resolve"], "skip_verify": True, "override_path": True}
    assert tomllib.loads(text) == {
        "server": "https://b.example:5000/v2/hub", **last_options,
        "host": {"https://a.example": {"capabilities": ["pull", "resolve"]},
                 "https://b.example:5000/v2/hub": last_options},
    }
    assert files == []


def test_every_file_is_listed_once():
    entry = {"mirrors": [{"url": "https://m.example", "ca_file": "/ca.pem"}], "fallback": False}
    assert [item["name"] for item in hosts_toml("docker.io", entry, MOUNT + "/docker.io")[1]] == ["mirror1-ca.pem"]
    assert [item["name"] for item in hosts_toml("r.example", {"ca_file": "/ca.pem"}, MOUNT + "/r.example")[1]] == [
        "registry-ca.pem"]


def test_the_default_namespace_leaves_the_server_to_containerd():
    """_default falls back to whichever registry the image names: no server line."""
    parsed = tomllib.loads(hosts_toml("_default", {"mirrors": ["https://m.example"]}, MOUNT + "/_default")[0])
    assert parsed == {"host": {"https://m.example": {"capabilities": ["pull", "resolve"]}}}


def test_registry_files_list_every_file_with_its_path_mode_and_secrecy():
    files = registry_files(SITE, MOUNT)
    assert [(item["path"], item["mode"], item["secret"], "content" in item) for item in files] == [
        ("docker.io/hosts.toml", "0600", True, True),
        ("docker.io/mirror1-ca.pem", "0600", False, False),
        ("registry.site.example:5000/hosts.toml", "0600", False, True),
        ("registry.site.example:5000/registry-ca.pem", "0600", False, False),
        ("registry.site.example:5000/registry-client.pem", "0600", False, False),
        ("registry.site.example:5000/registry-client-key.pem", "0600", True, False),
    ]
    assert files[0]["content"] == DOCKER_IO
    assert files[1]["src"] == CA
    for item in files:
        if "content" in item:
            tomllib.loads(item["content"])  # valid TOML


def test_registry_files_refuse_a_value_with_problems():
    with pytest.raises(RegistriesError, match="u7s_registries"):
        registry_files({"docker.io": {}}, MOUNT)


def test_leftovers_are_the_topmost_paths_no_registry_holds():
    files = registry_files(SITE, MOUNT)
    found = [item["path"] for item in files] + [
        "quay.io", "quay.io/hosts.toml", "quay.io/mirror1-ca.pem",   # a registry that left the setting
        "docker.io/mirror2-ca.pem",                                    # a mirror's CA that did
        "docker.io/sub", "docker.io/sub/x",                            # whatever else
        "registry.site.example:5000",
    ]
    assert leftovers(found, files) == ["docker.io/mirror2-ca.pem", "docker.io/sub", "quay.io"]
    assert leftovers([], []) == []
    assert leftovers(["docker.io", "docker.io/hosts.toml"], []) == ["docker.io"]


# --- in the cluster plan -----------------------------------------------------------------------

def test_the_plan_refuses_a_bad_value():
    result = plan(records_of(group_vars={"u7s_registries": {"docker.io": {"mirrors": ["ftp://m.example"]}}}))
    assert any(text.startswith('u7s_registries["docker.io"].mirrors[0].url') and "Fix:" in text
               for text in result["problems"]), result["problems"]


def test_the_plan_refuses_a_value_that_is_not_a_mapping():
    result = plan(records_of(group_vars={"u7s_registries": ["docker.io"]}))
    assert any("u7s_registries" in text and "Fix:" in text for text in result["problems"]), result["problems"]


def test_the_plan_refuses_a_value_that_differs_between_hosts_without_showing_passwords():
    result = plan(records_of(host_vars={"host1": {"u7s_registries": SITE}}))
    assert any(text.startswith("u7s_registries must be the same on every host") and "host1" in text
               for text in result["problems"]), result["problems"]
    assert "s3cr:t" not in "\n".join(result["problems"])
    assert '"password": "<redacted>"' in "\n".join(result["problems"])


def test_a_value_of_the_wrong_type_is_shown_without_passwords():
    result = plan(records_of(group_vars={"u7s_registries": [{"password": "s3cr:t"}]}))
    assert result["problems"] and "s3cr:t" not in "\n".join(result["problems"])


def test_the_plan_names_certificate_files_missing_on_the_controller():
    result = plan(records_of(group_vars={"u7s_registries": SITE}), missing_files={KEY})
    assert result["problems"] == [
        'u7s_registries["registry.site.example:5000"].client_key_file names %s, which is not a file on the '
        "controller. Fix: put the PEM file there, or correct the path." % KEY]


def test_the_plan_accepts_a_good_value_and_keeps_it_out_of_the_recorded_settings():
    result = plan(records_of(group_vars={"u7s_registries": SITE}))
    assert result["problems"] == []
    # Ansible prints the plan (-v, a failure): the passwords are not in it.
    assert result["settings"]["u7s_registries"] == redacted(SITE)
    assert result["settings"]["u7s_registries"]["docker.io"]["mirrors"][0]["password"] == "<redacted>"
    # Changing it needs no new node: it is not one of the settings a running node keeps.
    assert "u7s_registries" not in result["recorded_settings"]
