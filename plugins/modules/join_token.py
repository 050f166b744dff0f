#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: join_token
short_description: Get what workers need to join a kubeadm cluster with a bootstrap token
version_added: 0.1.0
description:
  - Returns a bootstrap token, the API server endpoint and the CA certificate hashes that a kubeadm
    C(JoinConfiguration) needs (C(discovery.bootstrapToken)), read and written through the Kubernetes API.
    No files are copied from the control plane and no C(kubeadm) output is parsed.
  - The endpoint and the CA come from the C(cluster-info) ConfigMap in C(kube-public) that C(kubeadm init)
    publishes; each hash is C(sha256:) and the SHA-256 of the DER SubjectPublicKeyInfo of one CA certificate,
    the form of C(kubeadm join --discovery-token-ca-cert-hash).
  - Reuses a bootstrap token (a Secret of type C(bootstrap.kubernetes.io/token) in C(kube-system)) that
    has both the C(authentication) and C(signing) usages, puts its users in the group
    C(system:bootstrappers:kubeadm:default-node-token) and stays valid for at least O(min_remaining).
    Among several, tokens this module created come first, then the one that expires last.
  - Otherwise creates a token with lifetime O(ttl), labelled C(app.kubernetes.io/managed-by=u7s.cluster)
    and described as C(u7s.cluster join token). Expired tokens are left to the token cleaner of
    C(kube-controller-manager).
options:
  ttl:
    description:
      - Lifetime of a new token.
      - A duration, either an integer number of seconds or numbers with the units C(h), C(m) and C(s)
        in that order, like C(1h), C(10m), C(1h30m) or C(90s).
      - Must be longer than O(min_remaining), or a new token would not be reused by the next run.
    type: raw
    default: 1h
  min_remaining:
    description:
      - How long an existing token must still be valid to be reused; the time the joins may take.
      - A duration in the format of O(ttl); C(0) reuses any token that has not expired.
    type: raw
    default: 10m
  api_server_endpoint:
    description:
      - The C(host:port) to return as RV(api_server_endpoint) instead of the server named in C(cluster-info),
        for example a load balancer in front of the control plane.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - u7s.cluster.kube
attributes:
  check_mode:
    support: full
    details:
      - Reads as usual. When a token would be created, reports a change and returns RV(token) and
        RV(token_id) as V(null), since a token that does not exist cannot be handed out.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - cryptography (Python library)
notes:
  - RV(token) is a credential that lets anyone who can reach the API server register a node until it
    expires. Set C(no_log) on the task, and on tasks that template it, so it does not end up in logs
    (a module cannot hide a value it returns).
  - C(kubeadm join) checks the token against the JWS signature that the bootstrap signer of
    C(kube-controller-manager) adds to C(cluster-info) for each signing token, shortly after the token
    is created.
  - The kubeconfig needs to get the C(cluster-info) ConfigMap in C(kube-public) and to list and create
    Secrets in C(kube-system).
seealso:
  - name: Authenticating with bootstrap tokens
    description: The Secret format of bootstrap tokens.
    link: https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/
  - name: kubeadm join
    description: Token-based discovery with CA pinning.
    link: https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-join/
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: Get a join token and the discovery data from the first control-plane host
  u7s.cluster.join_token:
    kubeconfig: /etc/kubernetes/admin.conf
  delegate_to: "{{ groups['control_plane'][0] }}"
  run_once: true
  register: u7s_join
  no_log: true

- name: Write the JoinConfiguration on the workers
  ansible.builtin.copy:
    dest: /etc/kubernetes/join.yaml
    mode: "0600"
    content: |
      apiVersion: kubeadm.k8s.io/v1beta4
      kind: JoinConfiguration
      discovery:
        bootstrapToken:
          apiServerEndpoint: {{ u7s_join.api_server_endpoint }}
          token: {{ u7s_join.token }}
          caCertHashes: {{ u7s_join.ca_cert_hashes | to_json }}
  no_log: true

- name: A token valid for a day, renewed when less than two hours are left
  u7s.cluster.join_token:
    ttl: 24h
    min_remaining: 2h
    api_server_endpoint: k8s.example.org:6443
  register: u7s_join
  no_log: true
"""

RETURN = r"""
token:
  description:
    - The bootstrap token, C(<token_id>.<secret>). A credential; see the notes.
    - V(null) in check mode when a token would be created.
  returned: success
  type: str
  sample: abcdef.0123456789abcdef
token_id:
  description:
    - The public part of RV(token); the token's Secret is C(kube-system/bootstrap-token-<token_id>).
    - V(null) in check mode when a token would be created.
  returned: success
  type: str
  sample: abcdef
expiration:
  description:
    - When the token expires, RFC 3339 in UTC; V(null) for a token that never expires.
    - In check mode, when a token created now would expire.
  returned: success
  type: str
  sample: "2026-01-31T12:00:00Z"
created:
  description: Whether a new token was created (in check mode, would be created).
  returned: success
  type: bool
  sample: false
api_server_endpoint:
  description: C(host:port) of the API server, from C(cluster-info) unless O(api_server_endpoint) is set.
  returned: success
  type: str
  sample: 192.0.2.10:6443
ca_cert_hashes:
  description: C(sha256:<hex>) public key pin of each CA certificate in C(cluster-info), for C(caCertHashes).
  returned: success
  type: list
  elements: str
  sample: ["sha256:7f1e2b51e6a64b4a6a8c4dd0e2a8a3b3e7c0b1d9a4f8e6c2b0d5a7e9f1c3b5d7"]
"""

import base64
import binascii
import datetime
import hashlib
import re
import secrets
import string
import traceback
import typing as t
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.u7s.cluster.plugins.module_utils.durations import parse_duration
from ansible_collections.u7s.cluster.plugins.module_utils.kube import (
    REQUEST_TIMEOUT,
    ApiException,
    KubeError,
    api_errors,
    core_api,
    format_rfc3339,
    kube_argument_spec,
    parse_rfc3339,
)

try:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

try:
    import yaml
    from kubernetes import client as k8s_client
except ImportError:
    pass  # module_utils.kube reports the missing library (which requires PyYAML)

TOKEN_NAMESPACE = "kube-system"
TOKEN_TYPE = "bootstrap.kubernetes.io/token"
TOKEN_SECRET_PREFIX = "bootstrap-token-"
NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"
DESCRIPTION = "u7s.cluster join token"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "u7s.cluster"
TOKEN_ID_RE = re.compile(r"^[a-z0-9]{6}$")
TOKEN_SECRET_RE = re.compile(r"^[a-z0-9]{16}$")
TOKEN_ALPHABET = string.ascii_lowercase + string.digits
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO_NAME = "cluster-info"

_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)


# ---------------------------------------------------------------- durations and times


def utcnow() -> datetime.datetime:
    """The current time (a function, so tests can move the clock)."""
    return datetime.datetime.now(datetime.timezone.utc)


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class BootstrapToken:
    """A bootstrap token as its Secret describes it."""

    token_id: str
    secret: str
    expiration: datetime.datetime | None
    usages: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()
    description: str = ""
    ours: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return "%s.%s" % (self.token_id, self.secret)

    @property
    def secret_name(self) -> str:
        return TOKEN_SECRET_PREFIX + self.token_id

    def expiration_text(self) -> str | None:
        return format_rfc3339(self.expiration) if self.expiration is not None else None

    def string_data(self) -> dict[str, str]:
        """The Secret's data, unencoded (stringData)."""
        data = {"token-id": self.token_id, "token-secret": self.secret, "description": self.description}
        expiration = self.expiration_text()
        if expiration is not None:
            data["expiration"] = expiration
        for usage in sorted(self.usages):
            data["usage-bootstrap-%s" % usage] = "true"
        if self.groups:
            data["auth-extra-groups"] = ",".join(self.groups)
        return data


def decode_secret_data(data: t.Mapping[str, str] | None) -> dict[str, str] | None:
    """A Secret's base64 data as text, or None when any value does not decode."""
    decoded = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value or "", validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    return decoded


def token_from_secret(
    name: str, secret_type: str | None, data: t.Mapping[str, str] | None, labels: t.Mapping[str, str] | None
) -> BootstrapToken | None:
    """The token a Secret holds (data already decoded), or None when it is not a well-formed token.

    Mirrors what the API server's bootstrap token authenticator accepts: the
    right type, the name ``bootstrap-token-<token-id>``, id and secret of the
    right form, and a parseable expiration when there is one.
    """
    if secret_type != TOKEN_TYPE or data is None:
        return None
    token_id = data.get("token-id", "")
    token_secret = data.get("token-secret", "")
    if not TOKEN_ID_RE.match(token_id) or not TOKEN_SECRET_RE.match(token_secret):
        return None
    if name != TOKEN_SECRET_PREFIX + token_id:
        return None
    expiration = None
    if data.get("expiration"):
        try:
            expiration = parse_rfc3339(data["expiration"])
        except ValueError:
            return None
    usages = frozenset(
        key[len("usage-bootstrap-"):] for key, value in data.items()
        if key.startswith("usage-bootstrap-") and value == "true"
    )
    groups = tuple(group.strip() for group in data.get("auth-extra-groups", "").split(",") if group.strip())
    description = data.get("description", "")
    labels = dict(labels or {})
    ours = labels.get(MANAGED_BY_LABEL) == MANAGED_BY or description == DESCRIPTION
    return BootstrapToken(token_id, token_secret, expiration, usages, groups, description, ours, labels)


def token_is_usable(token: BootstrapToken, now: datetime.datetime, min_remaining: int) -> bool:
    """Whether a worker can join with the token for at least min_remaining seconds from now."""
    if not {"authentication", "signing"} <= token.usages or NODE_GROUP not in token.groups:
        return False
    if token.expiration is None:
        return True
    remaining = (token.expiration - now).total_seconds()
    return remaining > 0 and remaining >= min_remaining


def choose_token(
    tokens: t.Iterable[BootstrapToken], now: datetime.datetime, min_remaining: int
) -> BootstrapToken | None:
    """The usable token to reuse: ours before others, then the one expiring last, then by id."""
    usable = [token for token in tokens if token_is_usable(token, now, min_remaining)]
    if not usable:
        return None
    never = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
    return max(usable, key=lambda token: (token.ours, token.expiration or never, token.token_id))


def new_token(
    now: datetime.datetime, ttl: int, choice: t.Callable[[str], str] = secrets.choice
) -> BootstrapToken:
    """A fresh token for joining nodes, expiring ttl seconds from now."""
    token_id = "".join(choice(TOKEN_ALPHABET) for _i in range(6))
    token_secret = "".join(choice(TOKEN_ALPHABET) for _i in range(16))
    # Whole seconds, as stored: the returned expiration equals what a later run reads back.
    expiration = (now + datetime.timedelta(seconds=ttl)).replace(microsecond=0)
    return BootstrapToken(
        token_id, token_secret, expiration, frozenset(("authentication", "signing")), (NODE_GROUP,),
        DESCRIPTION, True, {MANAGED_BY_LABEL: MANAGED_BY},
    )


# ---------------------------------------------------------------- cluster-info


def parse_cluster_info(kubeconfig_text: str) -> tuple[str, bytes]:
    """Server URL and CA bundle (PEM) of the first cluster in cluster-info's kubeconfig."""
    try:
        config = yaml.safe_load(kubeconfig_text)
    except yaml.YAMLError as exc:
        raise ValueError("its kubeconfig is not YAML: %s" % exc) from None
    clusters = config.get("clusters") if isinstance(config, dict) else None
    if not clusters or not isinstance(clusters[0], dict) or not isinstance(clusters[0].get("cluster"), dict):
        raise ValueError("its kubeconfig names no cluster")
    cluster = clusters[0]["cluster"]
    server = cluster.get("server")
    if not server:
        raise ValueError("its kubeconfig has no server")
    ca_data = cluster.get("certificate-authority-data")
    if not ca_data:
        raise ValueError("its kubeconfig has no certificate-authority-data")
    try:
        ca_pem = base64.b64decode(ca_data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its certificate-authority-data is not base64") from None
    return str(server), ca_pem


def endpoint_from_server(server: str) -> str:
    """``host:port`` of an API server URL (443 when the URL has no port); IPv6 in brackets."""
    parts = urlsplit(server)
    if not parts.hostname:
        raise ValueError("server %r has no host" % server)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("server %r has an invalid port" % server) from None
    if port is None:
        port = 443 if parts.scheme != "http" else 80
    host = parts.hostname
    if ":" in host:
        host = "[%s]" % host
    return "%s:%d" % (host, port)


def ca_cert_hashes(ca_pem: bytes) -> list[str]:
    """``sha256:<hex>`` of the DER SubjectPublicKeyInfo of each certificate, as kubeadm pins CAs."""
    blocks = _PEM_CERT_RE.findall(ca_pem)
    if not blocks:
        raise ValueError("its certificate-authority-data holds no PEM certificate")
    hashes: list[str] = []
    for block in blocks:
        certificate = x509.load_pem_x509_certificate(block)
        spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        pin = "sha256:" + hashlib.sha256(spki).hexdigest()
        if pin not in hashes:
            hashes.append(pin)
    return hashes


# ---------------------------------------------------------------- API


def read_cluster_info(core: t.Any) -> tuple[str, bytes]:
    what = "Cannot read ConfigMap %s/%s" % (CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME)
    try:
        with api_errors(what, keep=(404,)):
            config_map = core.read_namespaced_config_map(
                CLUSTER_INFO_NAME, CLUSTER_INFO_NAMESPACE, _request_timeout=REQUEST_TIMEOUT
            )
    except ApiException:
        raise KubeError(
            "ConfigMap %s/%s does not exist; kubeadm init creates it in its bootstrap-token phase."
            % (CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME)
        ) from None
    text = (config_map.data or {}).get("kubeconfig")
    if not text:
        raise KubeError("ConfigMap %s/%s has no kubeconfig key." % (CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME))
    try:
        return parse_cluster_info(text)
    except ValueError as exc:
        raise KubeError("ConfigMap %s/%s: %s." % (CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME, exc)) from None


def list_tokens(core: t.Any) -> list[BootstrapToken]:
    with api_errors("Cannot list bootstrap token Secrets in %s" % TOKEN_NAMESPACE):
        secrets_list = core.list_namespaced_secret(
            TOKEN_NAMESPACE, field_selector="type=%s" % TOKEN_TYPE, _request_timeout=REQUEST_TIMEOUT
        )
    tokens = []
    for item in secrets_list.items or []:
        metadata = item.metadata
        token = token_from_secret(metadata.name, item.type, decode_secret_data(item.data), metadata.labels)
        if token is not None:
            tokens.append(token)
    return tokens


def create_token(core: t.Any, now: datetime.datetime, ttl: int, attempts: int = 3) -> BootstrapToken:
    """Create a token Secret; a new id when the id is taken (409)."""
    for attempt in range(attempts):
        token = new_token(now, ttl)
        body = k8s_client.V1Secret(
            metadata=k8s_client.V1ObjectMeta(name=token.secret_name, namespace=TOKEN_NAMESPACE, labels=token.labels),
            type=TOKEN_TYPE,
            string_data=token.string_data(),
        )
        try:
            with api_errors("Cannot create Secret %s/%s" % (TOKEN_NAMESPACE, token.secret_name), keep=(409,)):
                core.create_namespaced_secret(TOKEN_NAMESPACE, body, _request_timeout=REQUEST_TIMEOUT)
        except ApiException:
            if attempt == attempts - 1:
                raise KubeError("Cannot create a bootstrap token: %d random token ids were all taken." % attempts) from None
            continue
        return token
    raise AssertionError("unreachable")


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=kube_argument_spec(
            ttl=dict(type="raw", default="1h"),
            min_remaining=dict(type="raw", default="10m"),
            api_server_endpoint=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    try:
        ttl = parse_duration(module.params["ttl"], "ttl")
        min_remaining = parse_duration(module.params["min_remaining"], "min_remaining")
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if ttl <= min_remaining:
        module.fail_json(msg="ttl (%ds) must be longer than min_remaining (%ds)." % (ttl, min_remaining))
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)

    core = core_api(module)
    try:
        server, ca_pem = read_cluster_info(core)
        try:
            hashes = ca_cert_hashes(ca_pem)
            endpoint = module.params["api_server_endpoint"] or endpoint_from_server(server)
        except ValueError as exc:
            raise KubeError("ConfigMap %s/%s: %s." % (CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME, exc)) from None
        now = utcnow()
        token: BootstrapToken | None = choose_token(list_tokens(core), now, min_remaining)
        created = token is None
        expiration = token.expiration_text() if token is not None else None
        if token is None:
            if module.check_mode:
                expiration = format_rfc3339(now + datetime.timedelta(seconds=ttl))
            else:
                token = create_token(core, now, ttl)
                expiration = token.expiration_text()
    except KubeError as exc:
        module.fail_json(msg=str(exc))

    module.exit_json(
        changed=created,
        created=created,
        token=token.token if token is not None else None,
        token_id=token.token_id if token is not None else None,
        expiration=expiration,
        api_server_endpoint=endpoint,
        ca_cert_hashes=hashes,
    )


if __name__ == "__main__":
    main()
