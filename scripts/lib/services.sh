# Shared by scripts/test and scripts/up: find or start the services the appliance needs.
# Source it; functions print what they do on stderr and record what they started in
# STARTED_PIDS so that the caller can stop exactly that.

STARTED_PIDS=()
APPLIANCE_CACHE=${APPLIANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/appliance}

say() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { say "error: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  # apt_install PACKAGE...: installs Debian packages when running as root on Debian.
  is_root && command -v apt-get >/dev/null || return 1
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() {
  # wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND until it succeeds.
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.3
  done
  say "$what is up"
}

ensure_docker() {
  # A Docker engine: the one running, or Debian's docker.io started here (as root).
  if docker info >/dev/null 2>&1; then say "using the running Docker engine"; return 0; fi
  if ! command -v dockerd >/dev/null; then
    say "no Docker engine; installing Debian's docker.io"
    apt_install docker.io || die "no Docker engine, and cannot install one here: install Docker and start it"
  fi
  is_root || die "the Docker engine is not running; start it (e.g. sudo systemctl start docker)"
  local log=${STATE_DIR:-/tmp}/dockerd.log
  say "starting dockerd (log: $log)"
  setsid dockerd >"$log" 2>&1 &
  DOCKERD_STARTED=1
  # Tests may restart the engine (a fault test): it is stopped through its pid file.
  export APPLIANCE_TEST_DOCKERD_OWNED=1
  wait_for 60 "Docker engine" docker info || { tail -20 "$log" >&2; die "dockerd did not start"; }
}

ensure_compose() {
  # Docker Compose v2. Debian bookworm has none; as root on Debian, take the static CLI
  # plugin out of trixie's docker-compose package (nothing else from trixie is installed).
  if docker compose version >/dev/null 2>&1; then return 0; fi
  is_root && command -v apt-get >/dev/null \
    || die "Docker Compose v2 is missing: install the docker-compose-plugin package"
  say "installing the Docker Compose v2 plugin from Debian trixie's docker-compose package"
  local tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} trixie main" >"$tmp/trixie.list"
  local opts=(-o "Dir::Etc::sourcelist=$tmp/trixie.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives"
              -o "APT::Get::List-Cleanup=0")
  apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || die "cannot read trixie's package list"
  (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null 2>&1) \
    || die "cannot download trixie's docker-compose package"
  dpkg -x "$tmp"/docker-compose_*.deb "$tmp/x"
  install -D -m 755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" \
    /usr/local/lib/docker/cli-plugins/docker-compose
  rm -rf "$tmp"
  docker compose version >/dev/null 2>&1 || die "the Docker Compose plugin does not run"
}

go_tool_binary() {
  # go_tool_binary DIR BINARY WHAT FILE...: the program tools/DIR/build makes, built once
  # per content of its FILEs (their hash names the cache folder) and cached.
  local dir=$1 binary=$2 what=$3 hash bin go; shift 3
  hash=$(cd "tools/$dir" && cat "$@" | sha256sum | cut -c1-12)
  bin="$APPLIANCE_CACHE/$dir-$hash/$binary"
  if [ ! -x "$bin" ]; then
    go=$(command -v go || echo /usr/local/go/bin/go)
    if [ ! -x "$go" ]; then apt_install golang-go || true; go=$(command -v go || echo "$go"); fi
    [ -x "$go" ] || die "need Go to build $what"
    say "building $what once (cached in $(dirname "$bin"))"
    mkdir -p "$(dirname "$bin")"
    GO=$go "tools/$dir/build" "$bin.tmp" >&2 || die "building $what failed"
    mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}

ferretdb_binary() {
  # FerretDB embedded in tools/ferretdb-server, patched (its build says how).
  # (Without Go: set MONGODB_URI, or put mongod on PATH.)
  # shellcheck disable=SC2046  # one word per patch file
  go_tool_binary ferretdb-server ferretdb-server FerretDB \
    go.mod go.sum main.go build $(cd tools/ferretdb-server && echo patches/*)
}

mongo_ping() {
  "$PYTHON" - "$1" <<'PY'
import sys
from pymongo import MongoClient
MongoClient(sys.argv[1], serverSelectionTimeoutMS=500).admin.command("ping")
PY
}

ensure_mongodb() {
  # Sets MONGODB_URI: the one given, a mongod on PATH, or FerretDB (built once, cached).
  if [ -n "${MONGODB_URI:-}" ]; then say "using MONGODB_URI"; return 0; fi
  local port dir
  port=$(free_port)
  dir=${STATE_DIR:-$(mktemp -d)}/mongo
  mkdir -p "$dir"
  if command -v mongod >/dev/null; then
    say "starting mongod on port $port"
    mongod --dbpath "$dir" --port "$port" --bind_ip 127.0.0.1 >"$dir.log" 2>&1 &
  else
    local bin
    bin=$(ferretdb_binary)
    say "starting FerretDB on port $port"
    "$bin" -listen-addr "127.0.0.1:$port" -data-dir "$dir" >"$dir.log" 2>&1 &
    export APPLIANCE_TEST_FERRETDB="$bin"  # tests that stop and restart a server use it
  fi
  STARTED_PIDS+=($!)
  MONGODB_URI="mongodb://127.0.0.1:$port/"
  export MONGODB_URI
  wait_for 60 "MongoDB server" mongo_ping "$MONGODB_URI" || { tail -20 "$dir.log" >&2; die "MongoDB did not start"; }
}

ensure_nginx() {
  command -v nginx >/dev/null || apt_install nginx-light || die "nginx is missing: install it"
}

ensure_fuse() {
  # A FUSE file system whose reads hang (tests/hungfs.py): libfuse2 and fusermount.
  { command -v fusermount >/dev/null && ldconfig -p | grep -q libfuse.so.2; } \
    || apt_install fuse libfuse2 || die "FUSE (Debian's fuse, libfuse2) is missing"
  [ -e /dev/fuse ] || die "/dev/fuse is missing: the hung file system test needs FUSE"
}

AXE_VERSION=4.14.1
ensure_browser() {
  # The browser tests' parts: Debian's chromium (Playwright drives it; its own browser
  # download cannot work offline) and axe-core from npm, cached by version. Exports
  # APPLIANCE_TEST_CHROMIUM and APPLIANCE_TEST_AXE.
  command -v chromium >/dev/null || apt_install chromium || die "chromium is missing: install Debian's chromium"
  local axe_dir="$APPLIANCE_CACHE/axe-core-$AXE_VERSION"
  if [ ! -s "$axe_dir/axe.min.js" ]; then
    command -v npm >/dev/null || apt_install npm || die "npm is needed once, to fetch axe-core"
    local work
    work=$(mktemp -d)
    (cd "$work" && npm pack -q "axe-core@$AXE_VERSION" >/dev/null 2>&1 && tar -xzf "axe-core-$AXE_VERSION.tgz") \
      || { rm -rf "$work"; die "could not fetch axe-core $AXE_VERSION from npm"; }
    mkdir -p "$axe_dir"
    cp "$work/package/axe.min.js" "$work/package/LICENSE" "$axe_dir/"
    rm -rf "$work"
  fi
  export APPLIANCE_TEST_CHROMIUM=$(command -v chromium) APPLIANCE_TEST_AXE="$axe_dir/axe.min.js"
}

SLIVKA_VERSION=0.8.5b7  # the previous system, for the tests that compare with it

cached_venv() {
  # cached_venv DIR COMMAND WHAT PACKAGE...: a venv at $APPLIANCE_CACHE/DIR holding the
  # PACKAGEs from PyPI, made once (it is whole when bin/COMMAND exists). Sets VENV.
  VENV="$APPLIANCE_CACHE/$1"
  local command=$2 what=$3
  shift 3
  if [ ! -x "$VENV/bin/$command" ]; then
    say "installing $what in $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check "$@" \
      || { rm -rf "$VENV"; die "could not install $what from PyPI"; }
  fi
}

ensure_previous_system() {
  # The previous system (slivka) in a venv of its own, cached by version: its own example
  # service files run through the bundle, and its server answers the API parity tests.
  # Exports APPLIANCE_TEST_SLIVKA (its venv).
  cached_venv "slivka-$SLIVKA_VERSION" slivka "the previous system (slivka $SLIVKA_VERSION)" \
    "slivka[gunicorn]==$SLIVKA_VERSION"
  export APPLIANCE_TEST_SLIVKA=$VENV
}

seaweedfs_binary() {
  # SeaweedFS's weed (tools/seaweedfs, pinned, unchanged): about 5 minutes the first time.
  go_tool_binary seaweedfs weed "SeaweedFS, the tests' S3 server," go.mod go.sum build
}

s3_ping() {
  # Any answer from the S3 port (403 without keys) means it serves.
  curl -s -o /dev/null -w '%{http_code}' "$1/" | grep -q '^[2-4]'
}

ensure_s3() {
  # An S3 server for s3:// staging and the Snakemake workflow: SeaweedFS's `weed mini`
  # on free ports, listening on every address (task containers reach it through their
  # gateway), one identity with keys made here. Exports APPLIANCE_TEST_S3 as
  # "ENDPOINT ACCESS_KEY SECRET_KEY".
  local bin dir port key secret ports=()
  bin=$(seaweedfs_binary)
  dir=${STATE_DIR:-$(mktemp -d)}/s3
  mkdir -p "$dir/data"
  for _ in 1 2 3 4 5 6 7 8; do ports+=("$(free_port)"); done
  port=${ports[0]}
  key=appliance-test-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat >"$dir/s3.json" <<JSON
{"identities": [{"name": "appliance-test", "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  say "starting SeaweedFS's S3 server on port $port"
  setsid "$bin" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=0.0.0.0 -s3.config="$dir/s3.json" \
    -s3.port="$port" -s3.port.grpc="${ports[1]}" -master.port="${ports[2]}" \
    -master.port.grpc="${ports[3]}" -volume.port="${ports[4]}" -volume.port.grpc="${ports[5]}" \
    -filer.port="${ports[6]}" -filer.port.grpc="${ports[7]}" -s3.port.iceberg=0 -s3.port.lance=0 \
    -webdav=false -admin.ui=false -master.telemetry=false -s3.autoCreateBucket=false >"$dir.log" 2>&1 </dev/null &
  STARTED_PIDS+=($!)
  wait_for 120 "S3 server" s3_ping "http://127.0.0.1:$port" || { tail -30 "$dir.log" >&2; die "SeaweedFS did not start"; }
  export APPLIANCE_TEST_S3="http://127.0.0.1:$port $key $secret"
}

SNAKEMAKE_VERSION=9.27.1 SNAKEMAKE_TES_VERSION=0.1.3 SNAKEMAKE_S3_VERSION=0.3.6

ensure_snakemake() {
  # Snakemake with the TES executor and S3 storage plugins, as published (unpatched), in a
  # venv of its own cached by version. py-tes 0.4.2, which the TES plugin pins, imports
  # six without declaring it (docs/tes.md). Exports APPLIANCE_TEST_SNAKEMAKE (its command).
  cached_venv "snakemake-$SNAKEMAKE_VERSION-tes-$SNAKEMAKE_TES_VERSION-s3-$SNAKEMAKE_S3_VERSION" \
    snakemake "snakemake $SNAKEMAKE_VERSION and its TES and S3 plugins" \
    "snakemake==$SNAKEMAKE_VERSION" "snakemake-executor-plugin-tes==$SNAKEMAKE_TES_VERSION" \
    "snakemake-storage-plugin-s3==$SNAKEMAKE_S3_VERSION" six
  export APPLIANCE_TEST_SNAKEMAKE=$VENV/bin/snakemake
}

stop_started() {
  local pid
  if [ -n "${DOCKERD_STARTED:-}" ] && [ -f /var/run/docker.pid ]; then
    STARTED_PIDS+=("$(cat /var/run/docker.pid)")
  fi
  for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STARTED_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
