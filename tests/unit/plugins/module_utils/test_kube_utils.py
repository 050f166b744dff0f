# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Client setup, proxy choice, error messages and times of module_utils/kube.py, without an API server."""

from __future__ import annotations

import datetime
import json
import typing as t

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from ansible_collections.u7s.cluster.plugins.module_utils import kube
from ansible_collections.u7s.cluster.plugins.module_utils.kube import (
    KubeError,
    api_client_from_kubeconfig,
    api_errors,
    describe_api_exception,
    format_rfc3339,
    kube_argument_spec,
    no_proxy_matches,
    parse_rfc3339,
    proxy_for,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


class TestNoProxy:
    @pytest.mark.parametrize("host, port, no_proxy", [
        ("api.example.com", 6443, "*"),
        ("api.example.com", 6443, "example.com"),
        ("example.com", 6443, "example.com"),
        ("api.example.com", 6443, ".example.com"),
        ("API.Example.COM", 6443, " other.org , example.com "),
        ("10.1.2.3", 6443, "10.0.0.0/8"),
        ("10.1.2.3", 6443, "10.1.2.3"),
        ("2001:db8::1", 6443, "2001:db8::/32"),
        ("2001:db8::1", 6443, "[2001:db8::1]:6443"),
        ("api.example.com", 6443, "example.com:6443"),
    ])
    def test_matches(self, host: str, port: int, no_proxy: str) -> None:
        assert no_proxy_matches(host, port, no_proxy) is True

    @pytest.mark.parametrize("host, port, no_proxy", [
        ("api.example.com", 6443, ""),
        ("example.com", 6443, ".example.com"),  # a leading dot: subdomains only
        ("badexample.com", 6443, "example.com"),
        ("10.1.2.3", 6443, "10.2.0.0/16"),
        ("10.1.2.3", 6443, "10.1.2.4"),
        ("api.example.com", 6443, "example.com:443"),
        ("api.example.com", 6443, "not a cidr/99"),
    ])
    def test_does_not_match(self, host: str, port: int, no_proxy: str) -> None:
        assert no_proxy_matches(host, port, no_proxy) is False


class TestProxyFor:
    def test_https_proxy_applies_to_a_remote_server(self) -> None:
        env = {"HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://other:3128"}
        assert proxy_for("https://192.0.2.10:6443", env) == "http://proxy:3128"

    def test_upper_case_wins_like_go(self) -> None:
        env = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128"}
        assert proxy_for("https://api.example.com:6443", env) == "http://upper:3128"
        assert proxy_for("https://api.example.com:6443", {"https_proxy": "http://lower:3128"}) == "http://lower:3128"

    def test_http_server_uses_http_proxy(self) -> None:
        env = {"HTTPS_PROXY": "http://secure:3128", "HTTP_PROXY": "http://plain:3128"}
        assert proxy_for("http://api.example.com:8080", env) == "http://plain:3128"

    @pytest.mark.parametrize("server", ["https://127.0.0.1:6443", "https://[::1]:6443", "https://localhost:6443",
                                        "https://127.8.9.1"])
    def test_loopback_is_never_proxied(self, server: str) -> None:
        assert proxy_for(server, {"HTTPS_PROXY": "http://proxy:3128"}) is None

    def test_no_proxy_exempts_and_defaults_the_port(self) -> None:
        env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "k8s.example.org:443"}
        assert proxy_for("https://k8s.example.org", env) is None
        assert proxy_for("https://k8s.example.org:6443", env) == "http://proxy:3128"
        assert proxy_for("https://k8s.example.org", {"HTTPS_PROXY": "http://proxy:3128",
                                                     "no_proxy": ".example.org"}) is None

    def test_nothing_set_means_no_proxy(self) -> None:
        assert proxy_for("https://192.0.2.10:6443", {}) is None


def write_kubeconfig(path: t.Any, server: str = "https://192.0.2.10:6443", proxy_url: str | None = None) -> str:
    cluster: dict[str, t.Any] = {"server": server, "insecure-skip-tls-verify": True}
    if proxy_url:
        cluster["proxy-url"] = proxy_url
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": cluster}, {"name": "d", "cluster": {"server": "https://198.51.100.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "abcdef.0123456789abcdef"}}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "d", "user": "u"}}],
    }))
    return str(path)


class TestApiClientFromKubeconfig:
    def test_loads_server_and_credentials(self, tmp_path: t.Any) -> None:
        api_client = api_client_from_kubeconfig(write_kubeconfig(tmp_path / "config"), None, environ={})
        configuration = api_client.configuration
        assert configuration.host == "https://192.0.2.10:6443"
        assert configuration.api_key["BearerToken"] == "Bearer abcdef.0123456789abcdef"
        assert configuration.proxy is None

    def test_context_selects_the_cluster(self, tmp_path: t.Any) -> None:
        api_client = api_client_from_kubeconfig(write_kubeconfig(tmp_path / "config"), "other", environ={})
        assert api_client.configuration.host == "https://198.51.100.1:6443"

    def test_environment_proxy_reaches_the_connection_pool(self, tmp_path: t.Any) -> None:
        api_client = api_client_from_kubeconfig(
            write_kubeconfig(tmp_path / "config"), None, environ={"HTTPS_PROXY": "http://proxy.example:3128"}
        )
        assert api_client.configuration.proxy == "http://proxy.example:3128"
        # The pool is built when the ApiClient is: it must already go through the proxy.
        pool_manager = api_client.rest_client.pool_manager
        assert str(getattr(pool_manager, "proxy", "")).startswith("http://proxy.example:3128")

    def test_no_proxy_exempts_the_server(self, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
        # The library itself would take HTTPS_PROXY from os.environ; it must not.
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
        monkeypatch.setenv("NO_PROXY", "192.0.2.0/24")
        monkeypatch.delenv("https_proxy", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        api_client = api_client_from_kubeconfig(write_kubeconfig(tmp_path / "config"), None)
        assert api_client.configuration.proxy is None
        assert getattr(api_client.rest_client.pool_manager, "proxy", None) is None

    def test_proxy_url_in_the_kubeconfig_wins(self, tmp_path: t.Any) -> None:
        path = write_kubeconfig(tmp_path / "config", proxy_url="http://kubeconfig-proxy:8080")
        api_client = api_client_from_kubeconfig(
            path, None, environ={"HTTPS_PROXY": "http://env-proxy:3128", "NO_PROXY": "*"}
        )
        assert api_client.configuration.proxy == "http://kubeconfig-proxy:8080"

    def test_missing_file(self, tmp_path: t.Any) -> None:
        with pytest.raises(KubeError, match=r"^kubeconfig .*/nope does not exist or is not a file\.$"):
            api_client_from_kubeconfig(str(tmp_path / "nope"), None)

    def test_unknown_context(self, tmp_path: t.Any) -> None:
        path = write_kubeconfig(tmp_path / "config")
        with pytest.raises(KubeError) as err:
            api_client_from_kubeconfig(path, "missing", environ={})
        assert str(err.value).startswith("Cannot load %s with context missing: " % path)

    def test_not_a_kubeconfig(self, tmp_path: t.Any) -> None:
        path = tmp_path / "config"
        path.write_text("just: text\n")
        with pytest.raises(KubeError, match=r"^Cannot load .*/config: "):
            api_client_from_kubeconfig(str(path), None, environ={})


class FakeModule:
    def __init__(self, params: dict[str, t.Any]) -> None:
        self.params = params
        self.failed: dict[str, t.Any] | None = None

    def fail_json(self, **kwargs: t.Any) -> t.NoReturn:
        self.failed = kwargs
        raise SystemExit(1)


class TestConnect:
    def test_missing_library(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(kube, "HAS_KUBERNETES", False)
        monkeypatch.setattr(kube, "KUBERNETES_IMPORT_ERROR", "Traceback ... ImportError")
        module = FakeModule({"kubeconfig": None, "context": None})
        with pytest.raises(SystemExit):
            kube.connect(module)  # type: ignore[arg-type]
        assert module.failed is not None
        assert "Failed to import the required Python library (kubernetes)" in module.failed["msg"]
        assert module.failed["exception"] == "Traceback ... ImportError"

    def test_bad_kubeconfig_fails_with_the_message(self, tmp_path: t.Any) -> None:
        module = FakeModule({"kubeconfig": str(tmp_path / "nope"), "context": None})
        with pytest.raises(SystemExit):
            kube.connect(module)  # type: ignore[arg-type]
        assert module.failed == {"msg": "kubeconfig %s does not exist or is not a file." % (tmp_path / "nope")}

    def test_returns_a_client(self, tmp_path: t.Any) -> None:
        module = FakeModule({"kubeconfig": write_kubeconfig(tmp_path / "config"), "context": None})
        assert kube.connect(module).configuration.host == "https://192.0.2.10:6443"  # type: ignore[arg-type]


class TestCoreApi:
    def test_core_v1_api_on_the_modules_kubeconfig(self, tmp_path: t.Any) -> None:
        module = FakeModule({"kubeconfig": write_kubeconfig(tmp_path / "config"), "context": "other"})
        core = kube.core_api(module)  # type: ignore[arg-type]
        assert isinstance(core, client.CoreV1Api)
        assert core.api_client.configuration.host == "https://198.51.100.1:6443"

    def test_fails_the_module_like_connect(self, tmp_path: t.Any) -> None:
        module = FakeModule({"kubeconfig": str(tmp_path / "nope"), "context": None})
        with pytest.raises(SystemExit):
            kube.core_api(module)  # type: ignore[arg-type]
        assert module.failed == {"msg": "kubeconfig %s does not exist or is not a file." % (tmp_path / "nope")}


class TestTimes:
    @pytest.mark.parametrize("text, expected", [
        ("2026-01-31T12:00:00Z", NOW),
        ("2026-01-31t12:00:00z", NOW),
        (" 2026-01-31T12:00:00Z\n", NOW),
        ("2026-01-31T13:30:00+01:30", NOW),
        ("2026-01-31T07:00:00-05:00", NOW),
        ("2026-01-31T12:00:00.250Z", NOW.replace(microsecond=250000)),
        ("2026-01-31T12:00:00.123456789Z", NOW.replace(microsecond=123456)),  # Go's nanoseconds, cut
    ])
    def test_parse_rfc3339(self, text: str, expected: datetime.datetime) -> None:
        parsed = parse_rfc3339(text)
        assert parsed == expected
        assert parsed.utcoffset() == datetime.timedelta(0)

    @pytest.mark.parametrize("text", [
        "2026-01-31 12:00:00", "2026-01-31T12:00:00", "tomorrow", "2026-13-01T00:00:00Z", "2026-01-31T12:00:00+0100",
    ])
    def test_parse_rfc3339_rejects(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_rfc3339(text)

    def test_format_rfc3339_is_utc_whole_seconds(self) -> None:
        moment = datetime.datetime(2026, 1, 31, 13, 0, 0, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
        assert format_rfc3339(moment) == "2026-01-31T12:00:00Z"

    def test_format_rfc3339_takes_a_naive_time_as_utc(self) -> None:
        assert format_rfc3339(datetime.datetime(2026, 1, 31, 12, 0, 0, 5)) == "2026-01-31T12:00:00Z"

    def test_round_trip(self) -> None:
        assert format_rfc3339(parse_rfc3339("2026-01-31T07:00:00-05:00")) == "2026-01-31T12:00:00Z"
        assert parse_rfc3339(format_rfc3339(NOW)) == NOW


def api_exception(status: int, reason: str, message: str | None = None, body: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    if message is not None:
        body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status})
    exc.body = body
    return exc


class TestErrors:
    def test_status_reason_and_server_message(self) -> None:
        exc = api_exception(403, "Forbidden", 'secrets is forbidden: User "x" cannot list resource "secrets"')
        assert describe_api_exception(exc) == (
            'HTTP 403 Forbidden: secrets is forbidden: User "x" cannot list resource "secrets"'
        )

    def test_body_that_is_not_json(self) -> None:
        assert describe_api_exception(api_exception(502, "Bad Gateway", body="<html>oops</html>")) == (
            "HTTP 502 Bad Gateway: <html>oops</html>"
        )

    def test_no_body(self) -> None:
        assert describe_api_exception(api_exception(500, "Internal Server Error")) == "HTTP 500 Internal Server Error"

    def test_api_errors_turns_exceptions_into_one_line(self) -> None:
        with pytest.raises(KubeError) as err:
            with api_errors("Cannot read Node n1"):
                raise api_exception(401, "Unauthorized", "Unauthorized")
        assert str(err.value) == "Cannot read Node n1: HTTP 401 Unauthorized: Unauthorized"
        assert err.value.__cause__ is None and err.value.__suppress_context__ is True

    def test_kept_statuses_pass_through(self) -> None:
        with pytest.raises(ApiException) as err:
            with api_errors("Cannot read Node n1", keep=(404,)):
                raise api_exception(404, "Not Found", 'nodes "n1" not found')
        assert err.value.status == 404
        with pytest.raises(KubeError):
            with api_errors("Cannot read Node n1", keep=(404,)):
                raise api_exception(409, "Conflict", "conflict")

    def test_connection_errors(self) -> None:
        reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
        with pytest.raises(KubeError) as err:
            with api_errors("Cannot list Secrets"):
                raise MaxRetryError(None, "/api/v1/secrets", reason)  # type: ignore[arg-type]
        assert str(err.value).startswith("Cannot list Secrets: cannot reach the API server: ")
        assert "Connection refused" in str(err.value)


def test_argument_spec_has_env_fallbacks_and_is_a_copy() -> None:
    spec = kube_argument_spec(extra=dict(type="int"))
    assert set(spec) == {"kubeconfig", "context", "extra"}
    assert spec["kubeconfig"]["type"] == "path"
    assert spec["kubeconfig"]["fallback"][1] == ["K8S_AUTH_KUBECONFIG"]
    assert spec["context"]["fallback"][1] == ["K8S_AUTH_CONTEXT"]
    spec["kubeconfig"]["type"] = "str"
    assert kube_argument_spec()["kubeconfig"]["type"] == "path"
