# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Run a Kubernetes API module in-process against the kube_api fixture's server."""

from __future__ import annotations

import typing as t

import pytest
from module_runner import run_module

from apiserver.server import KubeAPI

Run = t.Callable[..., t.Dict[str, t.Any]]


def kube_module_runner(main: t.Callable[[], None], kube_api: KubeAPI, capsys: pytest.CaptureFixture[str]) -> Run:
    """run(**args) -> the module's result, with the fixture's admin kubeconfig unless args name another."""
    def run(**args: t.Any) -> dict[str, t.Any]:
        args.setdefault("kubeconfig", str(kube_api.kubeconfig))
        return run_module(main, args, capsys)

    return run
