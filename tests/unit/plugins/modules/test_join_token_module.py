# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""u7s.cluster.join_token: token choice, CA pins, and main() against a fake API (durations: test_durations.py)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import shutil
import subprocess
import typing as t
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ansible_collections.u7s.cluster.plugins.modules import join_token
from ansible_collections.u7s.cluster.plugins.modules.join_token import (
    DESCRIPTION,
    NODE_GROUP,
    BootstrapToken,
    ca_cert_hashes,
    choose_token,
    endpoint_from_server,
    new_token,
    parse_cluster_info,
    token_from_secret,
    token_is_usable,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------- tokens


def token_data(token_id: str = "abcdef", **changes: str | None) -> dict[str, str]:
    data = {
        "token-id": token_id,
        "token-secret": "0123456789abcdef",
        "expiration": "2026-01-31T13:00:00Z",
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": NODE_GROUP,
        "description": "made by hand",
    }
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def parsed(token_id: str = "abcdef", labels: dict[str, str] | None = None, **changes: str | None) -> BootstrapToken:
    token = token_from_secret("bootstrap-token-" + token_id, join_token.TOKEN_TYPE, token_data(token_id, **changes), labels)
    assert token is not None
    return token


class TestTokenFromSecret:
    def test_kubeadm_token(self) -> None:
        token = parsed()
        assert token.token == "abcdef.0123456789abcdef"
        assert token.expiration == NOW + datetime.timedelta(hours=1)
        assert token.usages == {"authentication", "signing"}
        assert token.groups == (NODE_GROUP,)
        assert token.ours is False

    def test_ours_by_label_or_description(self) -> None:
        assert parsed(labels={"app.kubernetes.io/managed-by": "u7s.cluster"}).ours is True
        assert parsed(description=DESCRIPTION).ours is True
        assert parsed(labels={"app.kubernetes.io/managed-by": "helm"}).ours is False

    def test_groups_are_a_comma_separated_list(self) -> None:
        assert parsed(auth_extra_groups="system:bootstrappers:a, %s" % NODE_GROUP).groups == (
            "system:bootstrappers:a", NODE_GROUP)

    def test_no_expiration_means_never(self) -> None:
        assert parsed(expiration=None).expiration is None

    @pytest.mark.parametrize("name, secret_type, data", [
        ("bootstrap-token-abcdef", "Opaque", token_data()),
        ("bootstrap-token-zzzzzz", join_token.TOKEN_TYPE, token_data()),
        ("bootstrap-token-ABCDEF", join_token.TOKEN_TYPE, token_data("ABCDEF")),
        ("bootstrap-token-abcdef", join_token.TOKEN_TYPE, token_data(token_secret="short")),
        ("bootstrap-token-abcdef", join_token.TOKEN_TYPE, token_data(expiration="next week")),
        ("bootstrap-token-abcdef", join_token.TOKEN_TYPE, None),
    ])
    def test_malformed_tokens_are_ignored(self, name: str, secret_type: str, data: dict[str, str] | None) -> None:
        assert token_from_secret(name, secret_type, data, None) is None

    def test_decode_secret_data(self) -> None:
        assert join_token.decode_secret_data({"a": base64.b64encode(b"xyz").decode(), "b": ""}) == {"a": "xyz", "b": ""}
        assert join_token.decode_secret_data({"a": "not base64!"}) is None


class TestChoice:
    def test_needs_both_usages_and_the_node_group(self) -> None:
        assert token_is_usable(parsed(), NOW, 600) is True
        assert token_is_usable(parsed(usage_bootstrap_signing="false"), NOW, 600) is False
        assert token_is_usable(parsed(usage_bootstrap_authentication=None), NOW, 600) is False
        assert token_is_usable(parsed(auth_extra_groups="system:bootstrappers:other"), NOW, 600) is False

    def test_min_remaining_boundary(self) -> None:
        token = parsed()  # one hour left
        assert token_is_usable(token, NOW, 3600) is True
        assert token_is_usable(token, NOW, 3601) is False
        assert token_is_usable(token, NOW + datetime.timedelta(hours=1), 0) is False  # expired
        assert token_is_usable(parsed(expiration=None), NOW + datetime.timedelta(days=999), 3600) is True

    def test_ours_first_then_the_latest_expiry(self) -> None:
        theirs_late = parsed("aaaaaa", expiration="2026-02-10T00:00:00Z")
        ours_early = parsed("bbbbbb", description=DESCRIPTION, expiration="2026-01-31T14:00:00Z")
        ours_late = parsed("cccccc", description=DESCRIPTION, expiration="2026-01-31T15:00:00Z")
        ours_expiring = parsed("dddddd", description=DESCRIPTION, expiration="2026-01-31T12:05:00Z")
        tokens = [theirs_late, ours_early, ours_late, ours_expiring]
        assert choose_token(tokens, NOW, 600) == ours_late
        assert choose_token(list(reversed(tokens)), NOW, 600) == ours_late
        assert choose_token([theirs_late, ours_expiring], NOW, 600) == theirs_late
        assert choose_token([ours_expiring], NOW, 600) is None

    def test_never_expiring_beats_expiring_and_ties_go_by_id(self) -> None:
        assert choose_token([parsed("aaaaaa"), parsed("bbbbbb", expiration=None)], NOW, 0).token_id == "bbbbbb"
        assert choose_token([parsed("bbbbbb"), parsed("aaaaaa")], NOW, 0).token_id == "bbbbbb"

    def test_new_token(self) -> None:
        token = new_token(NOW.replace(microsecond=123), 3600)
        assert len(token.token_id) == 6 and len(token.secret) == 16
        assert token.expiration == NOW + datetime.timedelta(hours=1)
        assert token.string_data() == {
            "token-id": token.token_id,
            "token-secret": token.secret,
            "expiration": "2026-01-31T13:00:00Z",
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": NODE_GROUP,
            "description": DESCRIPTION,
        }
        # What it writes reads back as a usable token of ours.
        again = token_from_secret(token.secret_name, join_token.TOKEN_TYPE, token.string_data(), token.labels)
        assert again == token
        assert choose_token([again], NOW, 600) == token

    def test_new_tokens_differ(self) -> None:
        assert len({new_token(NOW, 60).token for _i in range(20)}) == 20


# ---------------------------------------------------------------- cluster-info and CA pins


def make_cert(common_name: str, key: t.Any) -> bytes:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def rsa_ca() -> bytes:
    return make_cert("kubernetes", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_ca() -> bytes:
    return make_cert("other-ca", ec.generate_private_key(ec.SECP256R1()))


def openssl_pin(pem: bytes, tmp_path: Path) -> str:
    """kubeadm's documented recipe: openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum."""
    path = tmp_path / "ca.crt"
    path.write_bytes(pem)
    pubkey = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(path)],
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pubkey,
                         capture_output=True, check=True).stdout
    return "sha256:" + subprocess.run(["sha256sum"], input=der, capture_output=True, check=True).stdout.split()[0].decode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_ca_hash_matches_the_openssl_recipe(rsa_ca: bytes, ec_ca: bytes, tmp_path: Path) -> None:
    rsa_pin, ec_pin = openssl_pin(rsa_ca, tmp_path), openssl_pin(ec_ca, tmp_path)
    assert rsa_pin != ec_pin
    assert ca_cert_hashes(rsa_ca) == [rsa_pin]
    # A bundle: one pin per certificate, in bundle order, duplicates once.
    assert ca_cert_hashes(rsa_ca + b"\n" + ec_ca + rsa_ca) == [rsa_pin, ec_pin]


def test_ca_hash_is_over_the_public_key_not_the_certificate(rsa_ca: bytes) -> None:
    cert = x509.load_pem_x509_certificate(rsa_ca)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ca_cert_hashes(rsa_ca) == ["sha256:" + hashlib.sha256(spki).hexdigest()]
    assert ca_cert_hashes(rsa_ca) != ["sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()]


def test_ca_hash_needs_a_certificate() -> None:
    with pytest.raises(ValueError, match="no PEM certificate"):
        ca_cert_hashes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def cluster_info_text(server: str | None, ca_pem: bytes | None) -> str:
    cluster: dict[str, t.Any] = {}
    if server is not None:
        cluster["server"] = server
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": cluster}]})


def test_parse_cluster_info(rsa_ca: bytes) -> None:
    assert parse_cluster_info(cluster_info_text("https://192.0.2.10:6443", rsa_ca)) == ("https://192.0.2.10:6443", rsa_ca)


@pytest.mark.parametrize("text, message", [
    (cluster_info_text(None, b"x"), "no server"),
    (cluster_info_text("https://192.0.2.10:6443", None), "no certificate-authority-data"),
    ("clusters: []", "names no cluster"),
    ("[unclosed", "not YAML"),
    ("clusters: [{cluster: {server: 'https://a', certificate-authority-data: '%%%'}}]", "not base64"),
])
def test_parse_cluster_info_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cluster_info(text)


@pytest.mark.parametrize("server, endpoint", [
    ("https://192.0.2.10:6443", "192.0.2.10:6443"),
    ("https://k8s.example.org", "k8s.example.org:443"),
    ("https://[2001:db8::10]:6443/", "[2001:db8::10]:6443"),
    ("https://K8S.example.org:6443/prefix", "k8s.example.org:6443"),
])
def test_endpoint_from_server(server: str, endpoint: str) -> None:
    assert endpoint_from_server(server) == endpoint


@pytest.mark.parametrize("server", ["192.0.2.10:6443", "https://host:port", "https://"])
def test_endpoint_from_server_rejects(server: str) -> None:
    with pytest.raises(ValueError):
        endpoint_from_server(server)


# ---------------------------------------------------------------- main() against a fake API


class FakeCore:
    """The CoreV1Api calls join_token makes, over an in-memory store."""

    def __init__(self, ca_pem: bytes, server: str = "https://192.0.2.10:6443") -> None:
        self.cluster_info: client.V1ConfigMap | None = client.V1ConfigMap(
            data={"kubeconfig": cluster_info_text(server, ca_pem)})
        self.secrets: dict[str, client.V1Secret] = {}
        self.created: list[str] = []
        self.fail_list: ApiException | None = None
        self.conflicts = 0

    def read_namespaced_config_map(self, name: str, namespace: str, **_kw: t.Any) -> client.V1ConfigMap:
        assert (name, namespace) == ("cluster-info", "kube-public")
        if self.cluster_info is None:
            raise ApiException(status=404, reason="Not Found")
        return self.cluster_info

    def list_namespaced_secret(self, namespace: str, field_selector: str, **_kw: t.Any) -> client.V1SecretList:
        assert namespace == "kube-system" and field_selector == "type=bootstrap.kubernetes.io/token"
        if self.fail_list is not None:
            raise self.fail_list
        return client.V1SecretList(items=list(self.secrets.values()))

    def add(self, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> None:
        self.secrets[name] = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, namespace="kube-system", labels=labels),
            type="bootstrap.kubernetes.io/token",
            data={key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
        )

    def create_namespaced_secret(self, namespace: str, body: client.V1Secret, **_kw: t.Any) -> client.V1Secret:
        assert namespace == "kube-system"
        if self.conflicts:
            self.conflicts -= 1
            raise ApiException(status=409, reason="Conflict")
        self.created.append(body.metadata.name)
        self.add(body.metadata.name, body.string_data, body.metadata.labels)
        return body


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, rsa_ca: bytes) -> FakeCore:
    core = FakeCore(rsa_ca)
    monkeypatch.setattr(join_token, "core_api", lambda module: core)
    monkeypatch.setattr(join_token, "utcnow", lambda: NOW)
    return core


@pytest.fixture
def run(run_module: t.Callable[..., dict[str, t.Any]]) -> t.Callable[..., dict[str, t.Any]]:
    return lambda **args: run_module(join_token.main, args)


def test_main_creates_then_reuses(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]], rsa_ca: bytes) -> None:
    first = run()
    assert first["changed"] is True and first["created"] is True
    assert fake.created == ["bootstrap-token-" + first["token_id"]]
    assert first["expiration"] == "2026-01-31T13:00:00Z"
    assert first["api_server_endpoint"] == "192.0.2.10:6443"
    assert first["ca_cert_hashes"] == ca_cert_hashes(rsa_ca)
    assert first["token"].startswith(first["token_id"] + ".")

    second = run()
    assert second["changed"] is False and second["created"] is False
    assert second["token"] == first["token"]
    assert len(fake.created) == 1


def test_main_check_mode_creates_nothing(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    result = run(_ansible_check_mode=True, ttl="2h")
    assert result["changed"] is True and result["created"] is True
    assert result["token"] is None and result["token_id"] is None
    assert result["expiration"] == "2026-01-31T14:00:00Z"
    assert result["api_server_endpoint"] == "192.0.2.10:6443"
    assert fake.created == []


def test_main_check_mode_returns_an_existing_token(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.add("bootstrap-token-abcdef", token_data())
    result = run(_ansible_check_mode=True)
    assert result["changed"] is False
    assert result["token"] == "abcdef.0123456789abcdef"
    assert result["expiration"] == "2026-01-31T13:00:00Z"


def test_main_replaces_a_token_that_expires_too_soon(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.add("bootstrap-token-abcdef", token_data(expiration="2026-01-31T12:05:00Z"))
    assert run(min_remaining="4m")["token_id"] == "abcdef"
    result = run(min_remaining="10m", ttl=7200)
    assert result["created"] is True and result["token_id"] != "abcdef"
    assert result["expiration"] == "2026-01-31T14:00:00Z"


def test_main_retries_a_taken_token_id(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.conflicts = 2
    result = run()
    assert result["created"] is True
    assert fake.created == ["bootstrap-token-" + result["token_id"]]

    fake.secrets.clear()
    fake.created.clear()
    fake.conflicts = 3
    result = run()
    assert result["failed"] is True
    assert result["msg"] == "Cannot create a bootstrap token: 3 random token ids were all taken."


def test_main_endpoint_override(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    assert run(api_server_endpoint="lb.example.org:443")["api_server_endpoint"] == "lb.example.org:443"


@pytest.mark.parametrize("args, message", [
    ({"ttl": "10m"}, "ttl (600s) must be longer than min_remaining (600s)."),
    ({"ttl": "1d"}, "ttl must be a duration like 1h, 10m, 1h30m or 90s (or seconds), got '1d'."),
    ({"min_remaining": "soon"}, "min_remaining must be a duration like 1h, 10m, 1h30m or 90s (or seconds), got 'soon'."),
])
def test_main_rejects_bad_durations(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]],
                                    args: dict[str, t.Any], message: str) -> None:
    result = run(**args)
    assert result["failed"] is True
    assert result["msg"] == message
    assert fake.created == []


def test_main_without_cluster_info(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.cluster_info = None
    result = run()
    assert result["failed"] is True
    assert result["msg"] == (
        "ConfigMap kube-public/cluster-info does not exist; kubeadm init creates it in its bootstrap-token phase."
    )
    assert fake.created == []


def test_main_with_a_broken_cluster_info(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.cluster_info = client.V1ConfigMap(data={"kubeconfig": cluster_info_text("https://192.0.2.10:6443", b"junk")})
    result = run()
    assert result["failed"] is True
    assert result["msg"] == (
        "ConfigMap kube-public/cluster-info: its certificate-authority-data holds no PEM certificate."
    )


def test_main_reports_api_errors_in_one_line(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps({"message": 'secrets is forbidden: User "bob" cannot list resource "secrets"'})
    fake.fail_list = error
    result = run()
    assert result["failed"] is True
    assert result["msg"] == (
        'Cannot list bootstrap token Secrets in kube-system: HTTP 403 Forbidden: '
        'secrets is forbidden: User "bob" cannot list resource "secrets"'
    )
    assert "exception" not in result


def test_main_without_cryptography(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(join_token, "HAS_CRYPTOGRAPHY", False)
    result = run()
    assert result["failed"] is True
    assert "Failed to import the required Python library (cryptography)" in result["msg"]
