# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The options and notes every module that talks to the Kubernetes API shares (module_utils/kube.py)."""

from __future__ import annotations


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """u7s.cluster.kube"""

    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path of the kubeconfig to reach the API server with (the C(admin.conf) of kubeadm has every right a
        module of this collection needs).
      - When not set, the E(K8S_AUTH_KUBECONFIG) environment variable, else the default of the kubernetes
        Python library (E(KUBECONFIG), else C(~/.kube/config)).
    type: path
  context:
    description:
      - Context of the kubeconfig to use; the current context when not set (or E(K8S_AUTH_CONTEXT)).
    type: str
requirements:
  - kubernetes (Python library)
notes:
  - API errors fail the module with the HTTP status and the API server's message.
  - The proxy for the API server follows kubectl. A C(proxy-url) in the kubeconfig is used as is.
    Otherwise E(HTTPS_PROXY) applies unless E(NO_PROXY) matches the server, and a server on a loopback
    address is reached directly.
"""
