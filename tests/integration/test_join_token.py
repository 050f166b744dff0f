# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""u7s.cluster.join_token against a real kube-apiserver (the kube_api fixture)."""

from __future__ import annotations

import base64
import datetime
import re
import secrets
import string
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from apiserver.server import KubeAPI
from modules_helper import Run, kube_module_runner

from ansible_collections.u7s.cluster.plugins.modules import join_token

NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"
TOKEN_TYPE = "bootstrap.kubernetes.io/token"


def delete_all_tokens(core: client.CoreV1Api) -> None:
    """Bootstrap tokens exist on this throwaway API server only because tests made them."""
    for item in core.list_namespaced_secret("kube-system", field_selector="type=" + TOKEN_TYPE).items:
        try:
            core.delete_namespaced_secret(item.metadata.name, "kube-system")
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def core(kube_api: KubeAPI) -> Iterator[client.CoreV1Api]:
    api = client.CoreV1Api(kube_api.api_client)
    delete_all_tokens(api)
    yield api
    delete_all_tokens(api)


def cluster_info_kubeconfig(server: str, ca_pem: bytes) -> str:
    """The kubeconfig kubeadm init publishes in cluster-info: one cluster, no users."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "users": None, "contexts": None,
        "current-context": "",
        "clusters": [{"name": "", "cluster": {"server": server,
                                              "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
    })


@pytest.fixture
def cluster_info(kube_api: KubeAPI, core: client.CoreV1Api) -> Iterator[client.V1ConfigMap]:
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cluster-info", namespace="kube-public"),
        data={"kubeconfig": cluster_info_kubeconfig(kube_api.server, kube_api.ca_cert.read_bytes())},
    )
    try:
        created = core.create_namespaced_config_map("kube-public", body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        created = core.replace_namespaced_config_map("cluster-info", "kube-public", body)
    yield created
    try:
        core.delete_namespaced_config_map("cluster-info", "kube-public")
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def run(kube_api: KubeAPI, capsys: pytest.CaptureFixture[str]) -> Run:
    return kube_module_runner(join_token.main, kube_api, capsys)


def decoded(secret: client.V1Secret) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret.data.items()}


def random_part(length: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _i in range(length))


def rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def create_token_secret(core: client.CoreV1Api, expires: datetime.datetime, **extra: str) -> tuple[str, str]:
    """A token as `kubeadm token create` writes it."""
    token_id, token_secret = random_part(6), random_part(16)
    data = {
        "token-id": token_id, "token-secret": token_secret, "expiration": rfc3339(expires),
        "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
        "auth-extra-groups": NODE_GROUP,
    }
    data.update(extra)
    core.create_namespaced_secret("kube-system", client.V1Secret(
        metadata=client.V1ObjectMeta(name="bootstrap-token-" + token_id, namespace="kube-system"),
        type=TOKEN_TYPE, string_data=data,
    ))
    return token_id, token_secret


def token_ids(core: client.CoreV1Api) -> set[str]:
    items = core.list_namespaced_secret("kube-system", field_selector="type=" + TOKEN_TYPE).items
    return {decoded(item)["token-id"] for item in items}


def openssl_pin(ca_cert: Path) -> str:
    """kubeadm's documented recipe for --discovery-token-ca-cert-hash, run by openssl."""
    pubkey = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(ca_cert)],
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"],
                         input=pubkey, capture_output=True, check=True).stdout
    digest = subprocess.run(["sha256sum"], input=der, capture_output=True, check=True).stdout
    return "sha256:" + digest.split()[0].decode()


def whoami(kube_api: KubeAPI, token: str) -> client.V1UserInfo:
    cfg = kube_api.client_configuration(cert_file=None, key_file=None, api_key={"BearerToken": token},
                                        api_key_prefix={"BearerToken": "Bearer"})
    with client.ApiClient(cfg) as api_client:
        review = client.AuthenticationV1Api(api_client).create_self_subject_review(client.V1SelfSubjectReview())
    return review.status.user_info


def test_creates_a_token_then_reuses_it(kube_api: KubeAPI, core, cluster_info, run: Run) -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    first = run()
    after = datetime.datetime.now(datetime.timezone.utc)
    assert first["changed"] is True and first["created"] is True, first
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", first["token"])
    token_id, token_secret = first["token"].split(".")
    assert first["token_id"] == token_id

    secret = core.read_namespaced_secret("bootstrap-token-" + token_id, "kube-system")
    assert secret.type == TOKEN_TYPE
    assert secret.metadata.labels == {"app.kubernetes.io/managed-by": "u7s.cluster"}
    data = decoded(secret)
    assert data == {
        "token-id": token_id,
        "token-secret": token_secret,
        "expiration": first["expiration"],
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": NODE_GROUP,
        "description": "u7s.cluster join token",
    }
    expires = datetime.datetime.strptime(data["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert before + datetime.timedelta(hours=1) <= expires <= after + datetime.timedelta(hours=1)

    assert first["api_server_endpoint"] == kube_api.server[len("https://"):]
    assert first["ca_cert_hashes"] == [openssl_pin(kube_api.ca_cert)]

    second = run()
    assert second["changed"] is False and second["created"] is False
    assert (second["token"], second["expiration"]) == (first["token"], first["expiration"])
    assert token_ids(core) == {token_id}


def test_a_token_close_to_expiry_is_replaced(core, cluster_info, run: Run) -> None:
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    old_id, old_secret = create_token_secret(core, soon)

    allowed = run(min_remaining="30s")
    assert allowed["changed"] is False
    assert allowed["token"] == "%s.%s" % (old_id, old_secret)
    assert allowed["expiration"] == rfc3339(soon)

    result = run(min_remaining="10m")
    assert result["changed"] is True and result["created"] is True
    assert result["token_id"] != old_id
    assert token_ids(core) == {old_id, result["token_id"]}  # the old one is left to the token cleaner


def test_tokens_without_the_node_group_or_expired_are_not_reused(core, cluster_info, run: Run) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    # The unusable ones expire last, so they would win if they counted.
    other_group, _s = create_token_secret(core, now + datetime.timedelta(hours=6),
                                          **{"auth-extra-groups": "system:bootstrappers:other"})
    no_signing, _s = create_token_secret(core, now + datetime.timedelta(hours=6), **{"usage-bootstrap-signing": "false"})
    expired, _s = create_token_secret(core, now - datetime.timedelta(minutes=5))
    kubeadm_default, _s = create_token_secret(core, now + datetime.timedelta(hours=5),
                                              description="kubeadm init default token")

    result = run()
    assert result["changed"] is False
    assert result["token_id"] == kubeadm_default

    core.delete_namespaced_secret("bootstrap-token-" + kubeadm_default, "kube-system")
    result = run()
    assert result["created"] is True
    assert result["token_id"] not in {other_group, no_signing, expired}


def test_check_mode_creates_nothing(core, cluster_info, run: Run) -> None:
    result = run(_ansible_check_mode=True, ttl="2h")
    assert result["changed"] is True and result["created"] is True
    assert result["token"] is None and result["token_id"] is None
    assert result["ca_cert_hashes"] and result["api_server_endpoint"]
    assert result["expiration"] is not None
    assert token_ids(core) == set()

    real = run()
    assert token_ids(core) == {real["token_id"]}
    again = run(_ansible_check_mode=True)
    assert again["changed"] is False
    assert again["token"] == real["token"]


def test_the_token_authenticates_as_a_joining_node(kube_api: KubeAPI, core, cluster_info, run: Run) -> None:
    result = run(ttl=900, min_remaining=0)
    token_id = result["token_id"]

    def authenticated() -> client.V1UserInfo:
        user = whoami(kube_api, result["token"])
        assert user.username == "system:bootstrap:" + token_id
        return user

    # The authenticator reads Secrets through an informer: retry briefly.
    deadline = time.monotonic() + 15
    while True:
        try:
            user = authenticated()
            break
        except (ApiException, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert {"system:bootstrappers", NODE_GROUP} <= set(user.groups)


def test_endpoint_override(cluster_info, run: Run) -> None:
    result = run(api_server_endpoint="k8s.example.org:6443")
    assert result["api_server_endpoint"] == "k8s.example.org:6443"


def test_missing_cluster_info_fails_cleanly(core, run: Run) -> None:
    result = run()
    assert result["failed"] is True
    assert "ConfigMap kube-public/cluster-info does not exist" in result["msg"]
    assert "Traceback" not in result["msg"]
    assert token_ids(core) == set()


def test_api_errors_are_reported_with_status_and_message(
    kube_api: KubeAPI, core, cluster_info, run: Run, tmp_path: Path
) -> None:
    """A kubeconfig whose user may not list Secrets (a bootstrap token's) gets HTTP 403, not a traceback."""
    token_id, token_secret = create_token_secret(core, datetime.datetime.now(datetime.timezone.utc)
                                                 + datetime.timedelta(hours=1))
    kubeconfig = tmp_path / "bootstrap.conf"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "bootstrap",
        "clusters": [{"name": "test", "cluster": {
            "server": kube_api.server,
            "certificate-authority-data": base64.b64encode(kube_api.ca_cert.read_bytes()).decode()}}],
        "users": [{"name": "bootstrap", "user": {"token": "%s.%s" % (token_id, token_secret)}}],
        "contexts": [{"name": "bootstrap", "context": {"cluster": "test", "user": "bootstrap"}}],
    }))
    deadline = time.monotonic() + 15
    while True:
        result = run(kubeconfig=str(kubeconfig))
        # Until the authenticator's informer has the Secret, the answer is 401.
        if "HTTP 401" not in result.get("msg", "") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result["failed"] is True
    assert result["msg"].startswith("Cannot read ConfigMap kube-public/cluster-info: HTTP 403 Forbidden: ")
    assert "system:bootstrap:%s" % token_id in result["msg"]
    assert "Traceback" not in result["msg"]


def test_unreachable_server_fails_cleanly(kube_api: KubeAPI, run: Run, tmp_path: Path) -> None:
    config = yaml.safe_load(kube_api.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    kubeconfig = tmp_path / "closed-port.conf"
    kubeconfig.write_text(yaml.safe_dump(config))
    result = run(kubeconfig=str(kubeconfig))
    assert result["failed"] is True
    assert result["msg"].startswith("Cannot read ConfigMap kube-public/cluster-info: cannot reach the API server: ")
