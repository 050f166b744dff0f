# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Helpers to run a module's main() in-process and read its result."""

from __future__ import annotations

import typing as t

import pytest
from ansible.module_utils.basic import AnsibleModule
from module_runner import run_module as run_module_main

ModuleRunner = t.Callable[[t.Callable[[], None], t.Dict[str, t.Any]], t.Dict[str, t.Any]]


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str]) -> ModuleRunner:
    """run_module(main, args) -> the module's JSON result, failed or not.

    Special arguments such as _ansible_check_mode and _ansible_diff go in args.
    """
    def run(main: t.Callable[[], None], args: dict[str, t.Any]) -> dict[str, t.Any]:
        return run_module_main(main, args, capsys)

    return run


@pytest.fixture
def module_warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Messages passed to AnsibleModule.warn.

    Recorded at the call, because where they end up depends on the test
    process: once controller code (ansible.errors, ...) is imported, ansible-core
    2.19 shows them on stderr instead of returning them in the result.
    """
    recorded: list[str] = []
    original = AnsibleModule.warn

    def warn(self: AnsibleModule, warning: str, *args: t.Any, **kwargs: t.Any) -> None:
        recorded.append(warning)
        original(self, warning, *args, **kwargs)

    monkeypatch.setattr(AnsibleModule, "warn", warn)
    return recorded
