"""The proxy's HTTPS as configured (no service needed; the bundle's test_tls.py runs it)."""

from __future__ import annotations

import pytest

from appliance.errors import ConfigError
from appliance.proxyconf import ProxyOptions, nginx_config
from appliance.settings import Settings


def test_without_a_certificate_there_is_no_https() -> None:
    config = nginx_config(Settings.from_mapping({}), ProxyOptions())
    assert "ssl" not in config and "return 308" not in config


def test_with_one_https_serves_everything_and_http_redirects() -> None:
    settings = Settings.from_mapping({"tls_certificate": "/tls/c.pem", "tls_key": "/tls/k.pem"})
    config = nginx_config(settings, ProxyOptions())
    assert "ssl_certificate /tls/c.pem;" in config and "ssl_certificate_key /tls/k.pem;" in config
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in config
    assert "return 308 https://$host:8443$request_uri;" in config
    assert config.count("listen 8443 ssl") == 2  # the site's server, and the one for others
    assert "location /jobs/" in config.split("listen 8443 ssl;", 1)[1]  # the pages: HTTPS
    assert "Strict-Transport-Security" not in config
    at_443 = Settings.from_mapping({"tls_certificate": "/c", "tls_key": "/k", "https_port": 443})
    assert "return 308 https://$host$request_uri;" in nginx_config(at_443, ProxyOptions())


def test_the_command_line_names_the_files_as_the_proxy_sees_them() -> None:
    options = ProxyOptions(tls_certificate="/etc/appliance/tls/cert.pem",
                           tls_key="/etc/appliance/tls/key.pem", hsts=True)  # fmt: skip
    config = nginx_config(Settings.from_mapping({"tls_self_signed": True}), options)
    assert "ssl_certificate /etc/appliance/tls/cert.pem;" in config
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in config


@pytest.mark.parametrize("given", [{"tls_certificate": "/c"}, {"tls_key": "/k"}])
def test_a_certificate_without_its_key_is_an_error(given: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="tls_certificate and tls_key go together"):
        Settings.from_mapping(given)
