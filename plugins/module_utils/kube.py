# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Client code shared by the modules that talk to the Kubernetes API.

A module adds ``KUBE_ARGUMENT_SPEC`` to its argument_spec, gets an
``ApiClient`` from ``connect(module)`` (or the CoreV1Api from
``core_api(module)``) and wraps its API calls in ``api_errors(what)``, which
turns API and connection errors into ``KubeError`` with a one-line message
(HTTP status, reason and the API server's own message) instead of a traceback.
``parse_rfc3339`` and ``format_rfc3339`` read and write the API's times.

Proxies follow kubectl: a ``proxy-url`` in the kubeconfig wins; otherwise
``HTTPS_PROXY``/``HTTP_PROXY`` apply unless ``NO_PROXY`` matches the server, and
a loopback server is never proxied. The kubernetes library's own handling of
proxy environment variables differs between its versions, so it is replaced
by this one.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import traceback
import typing as t
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError as Urllib3HTTPError
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR: str | None = traceback.format_exc()

    class ApiException(Exception):  # type: ignore[no-redef]
        """Stand-in so ``except ApiException`` works without the library."""

        status: int | None = None
        reason: str | None = None
        body: str | None = None

    class ConfigException(Exception):  # type: ignore[no-redef]
        """Stand-in, see ApiException."""

    class Urllib3HTTPError(Exception):  # type: ignore[no-redef]
        """Stand-in, see ApiException."""
else:
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None

if t.TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule

# Seconds a single API request may take before the module gives up on it.
REQUEST_TIMEOUT = 30

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)

KUBE_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "kubeconfig": {"type": "path", "fallback": (env_fallback, ["K8S_AUTH_KUBECONFIG"])},
    "context": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_CONTEXT"])},
}


class KubeError(Exception):
    """An API call or the client setup failed; the message is meant for the user."""


def kube_argument_spec(**more: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """The kubeconfig and context options plus a module's own."""
    spec = {name: dict(option) for name, option in KUBE_ARGUMENT_SPEC.items()}
    spec.update(more)
    return spec


# ---------------------------------------------------------------- proxies


def _host_port(netloc_host: str) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if netloc_host.startswith("["):
        host, _sep, rest = netloc_host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif netloc_host.count(":") == 1:
        host, port = netloc_host.split(":")
    else:
        host, port = netloc_host, ""
    return host.lower(), int(port) if port.isdigit() else None


def no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
    """Whether a NO_PROXY value exempts host:port, with the rules of Go's net/http (kubectl).

    Entries are separated by commas: ``*`` matches everything; an IP address or
    CIDR matches addresses in it; ``example.com`` matches that name and its
    subdomains, ``.example.com`` its subdomains only; ``entry:port`` only that port.
    """
    host = host.lower().strip("[]")
    try:
        host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        host_ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if host_ip is not None and host_ip in network:
                return True
            continue
        name, entry_port = _host_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        try:
            entry_ip = ipaddress.ip_address(name)
        except ValueError:
            entry_ip = None
        if entry_ip is not None:
            if host_ip == entry_ip:
                return True
            continue
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(server: str, environ: t.Mapping[str, str]) -> str | None:
    """The proxy kubectl would use for the API server URL, from the environment."""
    parts = urlsplit(server)
    host = (parts.hostname or "").lower()
    if not host:
        return None
    scheme = parts.scheme.lower() or "https"
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    names = ("HTTPS_PROXY", "https_proxy") if scheme == "https" else ("HTTP_PROXY", "http_proxy")
    proxy = next((environ[name] for name in names if environ.get(name)), None)
    if not proxy:
        return None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    if no_proxy_matches(host, port, no_proxy):
        return None
    return proxy


# ---------------------------------------------------------------- client


def api_client_from_kubeconfig(
    kubeconfig: str | None, context: str | None, environ: t.Mapping[str, str] | None = None
) -> t.Any:
    """A ``kubernetes.client.ApiClient`` for the kubeconfig (None: the library default).

    Raises KubeError with a message naming the file when it cannot be used.
    """
    if kubeconfig is not None and not os.path.isfile(kubeconfig):
        raise KubeError("kubeconfig %s does not exist or is not a file." % kubeconfig)
    configuration = k8s_client.Configuration()
    # No proxy unless the kubeconfig names one (proxy-url) or proxy_for() finds one below.
    configuration.proxy = None
    try:
        k8s_config.load_kube_config(
            config_file=kubeconfig, context=context, persist_config=False, client_configuration=configuration
        )
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        where = kubeconfig if kubeconfig is not None else "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
        what = " with context %s" % context if context else ""
        raise KubeError("Cannot load %s%s: %s" % (where, what, exc)) from None
    if configuration.proxy is None:
        configuration.proxy = proxy_for(configuration.host, os.environ if environ is None else environ)
    # The connection pool is built from the configuration here, so the proxy is settled first.
    return k8s_client.ApiClient(configuration)


def connect(module: AnsibleModule) -> t.Any:
    """The ApiClient for the module's kubeconfig and context options; fails the module otherwise."""
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    try:
        return api_client_from_kubeconfig(module.params["kubeconfig"], module.params["context"])
    except KubeError as exc:
        module.fail_json(msg=str(exc))


def core_api(module: AnsibleModule) -> t.Any:
    """CoreV1Api for the module's kubeconfig and context options; fails the module otherwise.

    Modules import it by name and call it from main(), so a unit test replaces
    it in the module under test (monkeypatch.setattr(module, "core_api", ...)).
    """
    return k8s_client.CoreV1Api(connect(module))


# ---------------------------------------------------------------- times


def parse_rfc3339(text: str) -> datetime.datetime:
    """An aware UTC datetime from RFC 3339 text such as Go's time.RFC3339 writes.

    Raises ValueError for anything else, a time without offset included.
    """
    match = _RFC3339_RE.match(text.strip())
    if not match:
        raise ValueError("not an RFC 3339 time: %r" % text)
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7) or "0"
    microsecond = int((fraction + "000000")[:6])
    if match.group(8):
        offset = datetime.timedelta(0)
    else:
        offset = datetime.timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if match.group(9) == "-":
            offset = -offset
    return datetime.datetime(
        year, month, day, hour, minute, second, microsecond, tzinfo=datetime.timezone(offset)
    ).astimezone(datetime.timezone.utc)


def format_rfc3339(moment: datetime.datetime) -> str:
    """UTC, whole seconds, ``Z``: how the API and ``kubeadm token create`` write times.

    An aware datetime is converted to UTC; a naive one is taken as UTC already.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- errors


def describe_api_exception(exc: t.Any) -> str:
    """``HTTP 403 Forbidden: <the API server's message>`` for an ApiException."""
    text = "HTTP %s %s" % (exc.status, exc.reason or "")
    message = None
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = str(body)[:500]
    return "%s: %s" % (text.strip(), message) if message else text.strip()


def describe_connection_error(exc: BaseException) -> str:
    """The innermost useful reason of a urllib3 error (MaxRetryError wraps it)."""
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)


@contextlib.contextmanager
def api_errors(what: str, keep: t.Iterable[int] = ()) -> t.Iterator[None]:
    """Turn API and connection errors in the block into KubeError(``what: why``).

    ApiExceptions whose HTTP status is in ``keep`` (e.g. 404, 409) pass through
    unchanged for the caller to handle.
    """
    try:
        yield
    except ApiException as exc:
        if exc.status in tuple(keep):
            raise
        raise KubeError("%s: %s" % (what, describe_api_exception(exc))) from None
    except (Urllib3HTTPError, OSError) as exc:
        raise KubeError("%s: cannot reach the API server: %s" % (what, describe_connection_error(exc))) from None
