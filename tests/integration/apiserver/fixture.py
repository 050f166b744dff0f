"""pytest plugin: the session-scoped ``kube_api`` fixture (a real kube-apiserver).

Register it once for tests/integration, from tests/integration/conftest.py::

    from apiserver.fixture import kube_api  # noqa: F401  (real kube-apiserver, tests/integration/apiserver)

(An import, not ``pytest_plugins``: pytest rejects ``pytest_plugins`` in a
conftest below the rootdir whenever it is not an initial conftest, e.g. for
``pytest tests``.) A test module may instead say
``pytest_plugins = ["apiserver.fixture"]``.

Environment:
  U7S_KUBE_API_TIMEOUT  seconds to wait for etcd + /readyz (default 120)
  U7S_KUBE_API_KEEP=1   keep the work dir (binaries, PKI, logs) after the session
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from .bundle import BundleError, BundleMissing, locate_bundle
from .server import KubeAPI, KubeAPIServer, StartError


@pytest.fixture(scope="session")
def kube_api() -> Iterator[KubeAPI]:
    """etcd + kube-apiserver from the offline bundle on 127.0.0.1, stopped and removed at session end.

    Skips when no bundle is built for the current pins; fails when one exists but is broken.
    """
    # skip/fail outside the except blocks, so the report is not a chained traceback.
    problem: Exception | None = None
    try:
        bundle = locate_bundle()
    except BundleError as exc:
        problem = exc
    if isinstance(problem, BundleMissing):
        pytest.skip(str(problem))
    if problem is not None:
        pytest.fail(str(problem), pytrace=False)
    keep = os.environ.get("U7S_KUBE_API_KEEP") == "1"
    timeout = float(os.environ.get("U7S_KUBE_API_TIMEOUT", "120"))
    srv = KubeAPIServer(bundle, start_timeout=timeout, keep=keep)
    try:
        try:
            api = srv.start()
        except (StartError, BundleError) as exc:
            problem = exc
        if problem is not None:
            pytest.fail(str(problem), pytrace=False)
        t = srv.timings
        # Shown with -s or -rA: the timings help spot a slow start on a loaded machine.
        print(f"\nkube_api: {api.server} kubernetes {api.version} ready in {t['total']:.1f}s "
              f"(extract {t['extract']:.1f}s, pki {t['pki']:.1f}s, etcd {t['etcd']:.1f}s, "
              f"kube-apiserver {t['kube-apiserver']:.1f}s); workdir {srv.workdir}", file=sys.stderr)
        yield api
    finally:
        # Also after a failed start: no processes, no temp dir (unless U7S_KUBE_API_KEEP=1).
        srv.stop()
