# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Run a module's main() in-process and read its result (unit and integration tests alike)."""

from __future__ import annotations

import json
import typing as t

import pytest
from ansible.module_utils.testing import patch_module_args


def run_module(main: t.Callable[[], None], args: dict[str, t.Any], capsys: pytest.CaptureFixture[str]) -> dict[str, t.Any]:
    """The module's JSON result, failed or not; _ansible_check_mode and _ansible_diff go in args."""
    capsys.readouterr()  # drop earlier output
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            main()
    return json.loads(capsys.readouterr().out)
