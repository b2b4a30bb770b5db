"""The nginx configuration of the appliance's proxy, made from the settings.

The proxy is the only public door: it passes ``/api`` (and the health endpoints) to the web
processes, and serves uploaded files and job outputs straight from disk under the
``uploads_url`` and ``jobs_url`` prefixes, so the app never streams file bytes. Its body
size limit matches the app's, and its own errors are JSON like the app's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.settings import Settings
from appliance.web_limits import request_limit


@dataclass(frozen=True)
class ProxyOptions:
    listen: str = "8080"
    upstream: str = "127.0.0.1:8000"
    user: str | None = None  # nginx's worker user; None leaves nginx's default
    pid: str = "nginx.pid"
    worker_processes: str = "auto"


def _json_error(status: int, error: str, message: str) -> str:
    body = json.dumps({"error": error, "message": message, "status": status})
    return f"default_type application/json; return {status} '{body}';"


ERRORS = {
    400: ("bad request", "the request is malformed"),
    404: ("not found", "no such resource"),
    405: ("method not allowed", "files are read with GET"),
    413: ("request too large", "the request is larger than the limit of {max_body} bytes"),
    414: ("URI too long", "the request URI is too long"),
    503: ("unavailable", "the service is starting or overloaded; try again shortly"),
}


def _error_pages(max_body: int) -> str:
    """nginx's own errors as JSON, like the app's (URI-based pages work even for 400 and 414)."""
    lines = [
        "        error_page 400 /_errors/400.json;",
        "        error_page 403 404 =404 /_errors/404.json;",
        "        error_page 405 /_errors/405.json;",
        "        error_page 413 /_errors/413.json;",
        "        error_page 414 /_errors/414.json;",
        "        error_page 500 502 503 504 =503 /_errors/503.json;",
    ]
    for status, (error, message) in ERRORS.items():
        body = _json_error(status, error, message.format(max_body=max_body))
        # nginx itself refuses TRACE and writes to files; RFC 9110 wants Allow with a 405.
        allow = ' add_header Allow "GET, HEAD, POST, PUT, DELETE" always;' if status == 405 else ""
        lines.append(f"        location = /_errors/{status}.json {{ internal;{allow} {body} }}")
    return "\n".join(lines)


def nginx_config(settings: Settings, options: ProxyOptions) -> str:
    uploads_path = urlsplit(settings.uploads_url).path.rstrip("/") + "/"
    jobs_path = urlsplit(settings.jobs_url).path.rstrip("/") + "/"
    max_body = request_limit(settings.upload_max_bytes)
    user = f"user {options.user};\n" if options.user else ""
    static = """
            disable_symlinks on;
            autoindex off;
            default_type application/octet-stream;
            add_header X-Content-Type-Options nosniff always;
            add_header Content-Security-Policy "sandbox; default-src 'none'" always;
            location ~ /\\. { return 404; }"""
    return f"""# Made by `appliance proxy-config` from {settings.source}; edit the settings, not this.
{user}worker_processes {options.worker_processes};
pid {options.pid};
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    types {{
        text/plain txt log out err aln clustal fa fasta afa msf phy sto dnd nwk;
        application/json json;
    }}
    access_log off;
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    client_body_temp_path body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    upstream appliance_web {{ server {options.upstream}; keepalive 32; }}
    server {{
        listen {options.listen};
        client_max_body_size {max_body};
{_error_pages(max_body)}
        location ~ ^/(api|ga4gh)/ {{  # the REST API and the Task Execution API
            proxy_pass http://appliance_web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The client's own Host (with its port) and scheme, so that every absolute URL
            # and redirect the app makes points back through this proxy.
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering off;
            proxy_read_timeout 120s;
        }}
        location = /healthz {{ proxy_pass http://appliance_web; }}
        location = /readyz {{ proxy_pass http://appliance_web; }}
        location {uploads_path} {{
            alias {settings.uploads_dir}/;{static}
        }}
        location {jobs_path} {{
            alias {settings.jobs_dir}/;{static}
        }}
        location / {{ return 404; }}
    }}
}}
"""
