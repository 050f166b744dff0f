# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The registry filters, directly and as the registries role's tasks call them through templating."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.u7s.cluster.plugins.filter.registries import (
    FilterModule,
    registry_files,
    registry_leftovers,
)

VALUE = {"docker.io": {"mirrors": [{"url": "https://m.example", "username": "u", "password": "p"}]}}


def test_filters_are_registered():
    assert FilterModule().filters() == {"registry_files": registry_files, "registry_leftovers": registry_leftovers}


def test_registry_files_render_hosts_toml():
    files = registry_files(VALUE, "/u7s/registries")
    assert [(item["path"], item["secret"]) for item in files] == [("docker.io/hosts.toml", True)]
    assert 'Authorization = ["Basic dTpw"]' in files[0]["content"]


def test_registry_files_name_the_problems():
    with pytest.raises(AnsibleFilterError, match=r"registry_files: u7s_registries\[\"docker.io\"\].*Fix:"):
        registry_files({"docker.io": {"mirrors": ["ftp://m"]}}, "/u7s/registries")


def test_leftovers_through_templating_as_the_role_calls_it():
    """The role's own expression: found paths made relative, then the leftovers of the planned files."""
    variables = {"u7s_registries": VALUE, "registries_dir": "/home/u7s/.config/u7s/node/registries",
                 "found": [{"path": "/home/u7s/.config/u7s/node/registries/" + name}
                           for name in ("docker.io", "docker.io/hosts.toml", "quay.io", "quay.io/hosts.toml")]}
    expression = ("{{ found | map(attribute='path') | map('relpath', registries_dir) | u7s.cluster.registry_leftovers("
                  "u7s_registries | u7s.cluster.registry_files('/u7s/registries')) }}")
    assert Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression)) == ["quay.io"]


def test_a_bad_value_fails_the_template():
    with pytest.raises(AnsibleError, match="u7s_registries"):
        Templar(loader=DataLoader(), variables={"v": {"docker.io": {}}}).template(
            trust_as_template("{{ v | u7s.cluster.registry_files('/u7s/registries') }}"))


def test_leftovers_refuse_files_without_paths():
    with pytest.raises(AnsibleFilterError, match="registry_leftovers"):
        registry_leftovers(["docker.io"], [{"content": "x"}])
