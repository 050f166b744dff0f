"""The ``kube_api`` fixture gives a real API server that does what the modules need.

What the join-token and external-IP modules will rely on: bootstrap-token
Secrets that authenticate, a cluster-info ConfigMap in kube-public that
kubeadm join can read anonymously, and Node status.addresses written through
the status subresource.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import secrets
import ssl
import string
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

# tests/integration/conftest.py imports the fixture for every module; register
# it here only when it did not (registering an imported module again makes
# pytest warn that it cannot rewrite its asserts).
pytest_plugins = [] if "apiserver.fixture" in sys.modules else ["apiserver.fixture"]

from apiserver.server import KubeAPI  # noqa: E402  (after pytest_plugins, for the type only)

T = TypeVar("T")


def eventually(fn: Callable[[], T], timeout: float = 15.0) -> T:
    """Retry fn until it stops raising: authenticators and RBAC read through informer caches."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (ApiException, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def https_get(kube_api: KubeAPI, path: str) -> tuple[int, str]:
    """GET with the admin cert, outside the kubernetes client (checks the raw endpoint)."""
    ctx = ssl.create_default_context(cafile=str(kube_api.ca_cert))
    ctx.load_cert_chain(str(kube_api.client_cert), str(kube_api.client_key))
    host, port = kube_api.server.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_readyz_ok_and_binary_is_the_pinned_version(kube_api: KubeAPI) -> None:
    assert https_get(kube_api, "/readyz") == (200, "ok")
    status, body = https_get(kube_api, "/readyz?verbose")
    assert status == 200 and "[+]etcd ok" in body
    assert kube_api.server.startswith("https://127.0.0.1:")
    # The server runs the bundle's binary, not something else on PATH.
    assert client.VersionApi(kube_api.api_client).get_code().git_version == kube_api.version


def test_kubeconfig_works_for_a_module(kube_api: KubeAPI) -> None:
    """Modules get a kubeconfig path; load it the way they will."""
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig))
    try:
        names = {ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items}
    finally:
        api_client.close()
    assert {"kube-system", "kube-public", "default"} <= names


def test_node_status_addresses_go_through_the_status_subresource(kube_api: KubeAPI) -> None:
    core = client.CoreV1Api(kube_api.api_client)
    name = "u7s-test-node-" + secrets.token_hex(3)
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name, labels={"u7s.test/fixture": "true"})))
    try:
        assert core.read_node(name).metadata.labels["u7s.test/fixture"] == "true"
        addresses = [
            {"type": "InternalIP", "address": "10.100.0.5"},
            {"type": "Hostname", "address": name},
        ]
        core.patch_node_status(name, {"status": {"addresses": addresses}})
        got = core.read_node_status(name).status.addresses
        assert [(a.type, a.address) for a in got] == [("InternalIP", "10.100.0.5"), ("Hostname", name)]

        # A patch of the main resource drops status changes: the external-IP
        # module must use the status subresource.
        core.patch_node(name, {"status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}]}})
        assert "ExternalIP" not in {a.type for a in core.read_node(name).status.addresses}

        # Strategic merge keys addresses by type: adding ExternalIP keeps the others.
        core.patch_node_status(name, {"status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}]}})
        got = {(a.type, a.address) for a in core.read_node(name).status.addresses}
        assert got == {("InternalIP", "10.100.0.5"), ("Hostname", name), ("ExternalIP", "203.0.113.7")}
    finally:
        core.delete_node(name)


def _token_part(n: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _i in range(n))


def test_bootstrap_token_secret_is_accepted_and_authenticates(kube_api: KubeAPI) -> None:
    core = client.CoreV1Api(kube_api.api_client)
    token_id, token_secret = _token_part(6), _token_part(16)
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    # What `kubeadm token create` writes.
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=f"bootstrap-token-{token_id}", namespace="kube-system"),
        type="bootstrap.kubernetes.io/token",
        string_data={
            "token-id": token_id,
            "token-secret": token_secret,
            "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        },
    )
    core.create_namespaced_secret("kube-system", secret)
    try:
        stored = core.read_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system")
        assert stored.type == "bootstrap.kubernetes.io/token"
        assert base64.b64decode(stored.data["token-id"]).decode() == token_id

        def whoami(token: str) -> client.V1UserInfo:
            cfg = kube_api.client_configuration(cert_file=None, key_file=None,
                                                api_key={"BearerToken": token}, api_key_prefix={"BearerToken": "Bearer"})
            with client.ApiClient(cfg) as api_client:
                review = client.AuthenticationV1Api(api_client).create_self_subject_review(
                    client.V1SelfSubjectReview())
            return review.status.user_info

        # --enable-bootstrap-token-auth: the token is a credential (once the informer has the Secret).
        def authenticated() -> client.V1UserInfo:
            user = whoami(f"{token_id}.{token_secret}")
            assert user.username == f"system:bootstrap:{token_id}"
            return user

        user = eventually(authenticated)
        assert {"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"} <= set(user.groups)
        with pytest.raises(ApiException) as err:
            whoami(f"{token_id}.{_token_part(16)}")
        assert err.value.status == 401
    finally:
        core.delete_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system")


def test_cluster_info_in_kube_public_is_readable_anonymously(kube_api: KubeAPI) -> None:
    """kubeadm publishes cluster-info and lets system:anonymous read it; join discovery starts there."""
    core = client.CoreV1Api(kube_api.api_client)
    rbac = client.RbacAuthorizationV1Api(kube_api.api_client)
    ca_pem = kube_api.ca_cert.read_bytes()
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "users": None, "contexts": None, "current-context": "",
        "clusters": [{"name": "", "cluster": {"server": kube_api.server,
                                              "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
    }
    role = "kubeadm:bootstrap-signer-clusterinfo"
    core.create_namespaced_config_map("kube-public", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cluster-info", namespace="kube-public"),
        data={"kubeconfig": yaml.safe_dump(kubeconfig)},
    ))
    try:
        rbac.create_namespaced_role("kube-public", client.V1Role(
            metadata=client.V1ObjectMeta(name=role),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], resource_names=["cluster-info"],
                                       verbs=["get"])],
        ))
        rbac.create_namespaced_role_binding("kube-public", client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=role),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=role),
            subjects=[client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User", name="system:anonymous")],
        ))
        # No client certificate, no token: system:anonymous, as kubeadm join's discovery.
        anon_cfg = kube_api.client_configuration(cert_file=None, key_file=None)
        with client.ApiClient(anon_cfg) as anon:
            anon_core = client.CoreV1Api(anon)
            cm = eventually(lambda: anon_core.read_namespaced_config_map("cluster-info", "kube-public"))
            published = yaml.safe_load(cm.data["kubeconfig"])
            cluster = published["clusters"][0]["cluster"]
            assert cluster["server"] == kube_api.server
            assert base64.b64decode(cluster["certificate-authority-data"]) == ca_pem
            # The binding is that narrow: nothing else in kube-public.
            with pytest.raises(ApiException) as err:
                anon_core.list_namespaced_config_map("kube-public")
            assert err.value.status == 403
    finally:
        for delete in (lambda: rbac.delete_namespaced_role_binding(role, "kube-public"),
                       lambda: rbac.delete_namespaced_role(role, "kube-public"),
                       lambda: core.delete_namespaced_config_map("cluster-info", "kube-public")):
            try:
                delete()
            except ApiException as exc:
                if exc.status != 404:
                    raise
