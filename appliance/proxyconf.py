"""The nginx configuration of the appliance's proxy, made from the settings.

The proxy is the only public door: it passes ``/api``, the web pages (``/``, ``/services/``,
``/jobs/``, ``/my-jobs``) and the health endpoints to the web processes, serves the pages'
script and stylesheet from ``/static/`` (cached by browsers: their URLs carry a hash), and serves uploaded files and job outputs straight from disk under the
``uploads_url`` and ``jobs_url`` prefixes, so the app never streams file bytes (for a
job's file it only says yes or no first: a recorded output of a job that has ended, never
the rest of the job's directory, nothing while it runs). Its body
size limit matches the app's, and its own errors are JSON like the app's.

It also keeps one client from taking it from everyone: per-address connection and
request-rate limits (429 with Retry-After), header and body timeouts short enough that
slow bodies are cut, and room for thousands of connections. A client is its address (an
IPv6 one its /64), or the one a trusted front proxy names (``trusted_proxies``). It
answers only for the host names in ``public_hosts`` (421 for any other, so a
DNS-rebinding page cannot reach an appliance on localhost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.clientkeys import nginx_client_map
from appliance.pages.staticfiles import STATIC_URL, static_dir
from appliance.settings import Settings
from appliance.web_limits import request_limit


@dataclass(frozen=True)
class ProxyOptions:
    listen: str = "8080"
    upstream: str = "127.0.0.1:8000"
    user: str | None = None  # nginx's worker user; None leaves nginx's default
    pid: str = "nginx.pid"
    worker_processes: str = "auto"
    static_dir: str | None = None  # the pages' static files; None: this installation's
    access_log: str = "/dev/stdout"  # where the access log goes (setting access_log: its format)
    # HTTPS: the certificate chain and key as the proxy reads them (None: the settings'
    # tls_certificate and tls_key), the address it listens on, and whether browsers are
    # told to use HTTPS only (a site's own certificate, not a self-signed one)
    tls_certificate: str | None = None
    tls_key: str | None = None
    tls_listen: str = "8443"
    hsts: bool = False

    def tls(self, settings: Settings) -> tuple[str, str] | None:
        certificate = self.tls_certificate or settings.tls_certificate
        key = self.tls_key or settings.tls_key
        return (str(certificate), str(key)) if certificate and key else None


def _json_error(status: int, error: str, message: str) -> str:
    body = json.dumps({"error": error, "message": message, "status": status})
    body = body.replace("'", "\\u0027")  # valid JSON, and no end to nginx's quoted string
    return f"default_type application/json; return {status} '{body}';"


ERRORS = {
    400: ("bad request", "the request is malformed (a Host header is required)"),
    404: ("not found", "no such resource"),
    405: ("method not allowed", "files are read with GET"),
    408: ("request timeout", "the request was not sent in time"),
    412: ("precondition failed", "the file does not match the request's conditions"),
    413: ("request too large", "the request is larger than the limit of {max_body} bytes"),
    414: ("URI too long", "the request URI is too long"),
    416: ("range not satisfiable", "the requested range is outside the file"),
    421: (
        "misdirected request",
        "this appliance answers only for its own host names (the public_hosts setting)",
    ),
    429: (
        "too many requests",
        "this address sends too many requests or holds too many connections; slow down",
    ),
    431: ("request header fields too large", "the request's headers are too large"),
    501: (
        "not implemented",
        "the request uses something this server does not implement (a transfer encoding?)",
    ),
    503: ("unavailable", "the service is starting or overloaded; try again shortly"),
}
# error_page codes -> the JSON page answered (nginx's own 494 is a 431 to the client)
PAGES = {"400": 400, "403 404": 404, "405": 405, "408": 408, "412": 412, "413": 413,
         "414": 414, "416": 416, "421": 421, "429": 429, "494": 431, "501": 501,
         "500 502 503 504": 503}  # fmt: skip


def _error_pages(max_body: int) -> str:
    """nginx's own errors as JSON, like the app's (URI-based pages work even for 400 and 414)."""
    lines = []
    for codes, page in PAGES.items():
        changed = "" if codes == str(page) else f" ={page}"
        lines.append(f"        error_page {codes}{changed} /_errors/{page}.json;")
    for status, (error, message) in ERRORS.items():
        body = _json_error(status, error, message.format(max_body=max_body))
        headers = {  # RFC 9110 wants Allow with a 405 (nginx itself refuses TRACE, ...)
            405: ' add_header Allow "GET, HEAD, POST, PUT, DELETE" always;',
            429: " add_header Retry-After 1 always;",
        }.get(status, "")
        lines.append(f"        location = /_errors/{status}.json {{ internal;{headers} {body} }}")
    return "\n".join(lines)


ACCESS_FORMATS = {
    "json": (
        "log_format appliance_json escape=json '{"
        '"time":"$time_iso8601","request_id":"$request_id","client":"$remote_addr",'
        '"method":"$request_method","uri":"$request_uri","status":$status,'
        '"bytes":$body_bytes_sent,"duration_s":$request_time,'
        '"upstream_s":"$upstream_response_time","user_agent":"$http_user_agent"'
        "}';"
    ),
    "common": (
        "log_format appliance_common '$remote_addr - $remote_user [$time_local] "
        '"$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" '
        "rid=$request_id rt=$request_time';"
    ),
}


def _access_log(kind: str, path: str) -> str:
    """The access log's format and place (the setting ``access_log``: common, json, off)."""
    if kind == "off":
        return "    access_log off;"
    return f"    {ACCESS_FORMATS[kind]}\n    access_log {path} appliance_{kind};"


def _real_ip(settings: Settings) -> str:
    """From the front proxies in ``trusted_proxies`` (a TLS proxy, an Ingress), the
    client is the last address of X-Forwarded-For that is not one of them; from anyone
    else the header is not believed. Logs, limits and the app's quotas then see it."""
    if not settings.trusted_proxies:
        return ""
    lines = [f"    set_real_ip_from {network};" for network in settings.trusted_proxies]
    lines += ["    real_ip_header X-Forwarded-For;", "    real_ip_recursive on;"]
    return "\n" + "\n".join(lines)


# Modern protocols only; ciphers of Mozilla's "intermediate" profile without DHE (no
# dhparam file to manage): every client of the last years, nothing broken.
CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))  # fmt: skip


def _tls(files: tuple[str, str] | None) -> str:
    if files is None:
        return ""
    certificate, key = files
    return f"""
    # HTTPS (settings tls_certificate, tls_key)
    ssl_certificate {certificate};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {CIPHERS};
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:appliance_tls:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;"""


def _redirect(settings: Settings, options: ProxyOptions, names: str, default: str,
              errors: str) -> str:  # fmt: skip
    """Plain HTTP, with TLS on: every request is sent to HTTPS (308 keeps a POST a POST),
    but the health endpoints answer (probes inside the machine speak HTTP)."""
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    return f"""
    server {{
        listen {options.listen}{default};
        server_name {names};
{errors}
        location = /healthz {{ proxy_pass http://appliance_web; }}
        location = /readyz {{ proxy_pass http://appliance_web; }}
        location / {{ return 308 https://$host{port}$request_uri; }}
    }}"""


def _server_names(hosts: tuple[str, ...]) -> str:
    return " ".join(f"[{h}]" if ":" in h and not h.startswith("[") else h for h in hosts)


def nginx_config(settings: Settings, options: ProxyOptions) -> str:
    uploads_path = urlsplit(settings.uploads_url).path.rstrip("/") + "/"
    jobs_path = urlsplit(settings.jobs_url).path.rstrip("/") + "/"
    max_body = request_limit(settings.upload_max_bytes)
    user = f"user {options.user};\n" if options.user else ""
    errors = _error_pages(max_body)
    any_host = "*" in settings.public_hosts
    tls = options.tls(settings)
    secure = f"\n        listen {options.tls_listen} ssl default_server;" if tls else ""
    # Requests for any other host name (a DNS-rebinding page's, say) meet this server.
    other_hosts = (
        ""
        if any_host
        else f"""
    server {{
        listen {options.listen} default_server;{secure}
        server_name _;
{errors}
        location / {{ return 421; }}
    }}"""
    )
    names = "_" if any_host else _server_names(settings.public_hosts)
    default = " default_server" if any_host else ""
    listen = f"{options.tls_listen} ssl{default}" if tls else f"{options.listen}{default}"
    redirect = _redirect(settings, options, names, default, errors) if tls else ""
    hsts = ("\n        add_header Strict-Transport-Security \"max-age=31536000\" always;"
            if tls and options.hsts else "")  # fmt: skip
    per_client = ""
    if settings.proxy_client_connections:
        per_client += f"""
        limit_conn per_address {settings.proxy_client_connections};"""
    if settings.proxy_client_rate:
        per_client += f"""
        limit_req zone=rate_per_address burst={settings.proxy_client_rate * 10} nodelay;"""
    assets = options.static_dir or str(static_dir())
    upstream = """
            proxy_pass http://appliance_web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The client's own Host (with its port) and scheme, so that every absolute URL
            # and redirect the app makes points back through this proxy.
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;  # the client's address, for its quotas
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;  # in its logs and on the job it makes
            proxy_request_buffering off;
            proxy_read_timeout 120s;"""
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
events {{ worker_connections 8192; }}
http {{
    types {{
        text/plain txt log out err aln clustal fa fasta afa msf phy sto dnd nwk;
        application/json json;
        text/css css;
        text/javascript js;
    }}
{_access_log(settings.access_log, options.access_log)}
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    client_body_temp_path body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    # One client cannot take the proxy from everyone: its connections and request rate are
    # limited per address, and slow headers and bodies are cut (settings proxy_client_*).
    # A client is its address, an IPv6 one its /64 (appliance.clientkeys).{_real_ip(settings)}
{nginx_client_map()}
    limit_conn_zone $appliance_client zone=per_address:10m;
    limit_req_zone $appliance_client zone=rate_per_address:10m rate={max(1, settings.proxy_client_rate)}r/s;
    limit_conn_status 429;
    limit_req_status 429;
    limit_conn_log_level warn;
    limit_req_log_level warn;
    client_header_timeout 10s;
    client_body_timeout {settings.proxy_body_timeout:g}s;
    send_timeout 60s;
    keepalive_timeout 30s;
    reset_timedout_connection on;
    # Idle connections to the web process are closed here before hypercorn closes them
    # (its keep-alive timeout is 30 s): else a request sent on one just as hypercorn
    # closes it fails (502/503, "upstream prematurely closed"), and a POST is not retried.
    upstream appliance_web {{ server {options.upstream}; keepalive 32; keepalive_timeout 20s; }}{_tls(tls)}{other_hosts}{redirect}
    server {{
        listen {listen};
        server_name {names};
        client_max_body_size {max_body};{per_client}{hsts}
{errors}
        # Only the methods HTTP defines for such an API (nginx itself refuses TRACE and
        # malformed ones): a client making up one per request gets 405 here.
        if ($request_method !~ ^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH)$) {{ return 405; }}
        location ~ ^/(api|ga4gh)/ {{  # the REST API and the Task Execution API{upstream}
        }}
        # The web pages for people (appliance.pages)
        location = / {{{upstream}
        }}
        location = /my-jobs {{{upstream}
        }}
        location /services/ {{{upstream}
        }}
        location /jobs/ {{{upstream}
        }}
        location {STATIC_URL}/ {{  # the pages' script and stylesheet; their URLs carry a hash
            alias {assets}/;
            autoindex off;
            add_header Cache-Control "public, max-age=31536000, immutable" always;
            add_header X-Content-Type-Options nosniff always;
            location ~ /\\. {{ return 404; }}
        }}
        location = /metrics {{  # the operator's token, or the setting metrics_public{upstream}
        }}
        location = /healthz {{ proxy_pass http://appliance_web; }}
        location = /readyz {{ proxy_pass http://appliance_web; }}
        location {uploads_path} {{
            alias {settings.uploads_dir}/;{static}
        }}
        location {jobs_path} {{  # only a recorded output of a job that ended (the app says)
            auth_request /_served;
            alias {settings.jobs_dir}/;{static}
        }}
        location = /_served {{
            internal;
            proxy_pass http://appliance_web/_internal/served;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Served-Uri $request_uri;
        }}
        location / {{ return 404; }}
    }}
}}
"""
