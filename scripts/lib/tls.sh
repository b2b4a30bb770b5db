# The bundle's HTTPS (sourced by scripts/up): the site's certificate and key, or a
# self-signed pair for a workstation, put into the volume PROJECT-tls that only the proxy
# mounts (owned by its user, the key readable by it alone).
#
# From the settings file: APPLIANCE_TLS_CERTIFICATE and APPLIANCE_TLS_KEY (files on this
# host), or APPLIANCE_TLS_SELF_SIGNED=true; APPLIANCE_HTTPS_PORT (default 8443) is the
# port published. Sets TLS (on/off), TLS_ARGS (for appliance proxy-config), TLS_DIGEST (a
# change recreates the proxy: a renewed certificate is served), HTTPS_PORT, and copies
# the certificate to compose/.state/PROJECT-tls.crt (what clients of a self-signed one
# are told to trust).

tls_prepare() {
  local project=$1 image=$2 cert key self_signed hosts
  cert=$(setting APPLIANCE_TLS_CERTIFICATE)
  key=$(setting APPLIANCE_TLS_KEY)
  self_signed=$(setting APPLIANCE_TLS_SELF_SIGNED | tr 'A-Z' 'a-z')
  HTTPS_PORT=$(setting APPLIANCE_HTTPS_PORT)
  HTTPS_PORT=${HTTPS_PORT:-8443}
  TLS=off TLS_ARGS=() TLS_DIGEST=
  if [ -n "$cert$key" ]; then
    [ -n "$cert" ] && [ -n "$key" ] || die "APPLIANCE_TLS_CERTIFICATE and APPLIANCE_TLS_KEY go together"
    [ -r "$cert" ] || die "cannot read the certificate $cert (APPLIANCE_TLS_CERTIFICATE)"
    [ -r "$key" ] || die "cannot read the key $key (APPLIANCE_TLS_KEY)"
    say "HTTPS with the site's certificate $cert"
    docker run --rm --network none --user 0:0 --entrypoint sh \
      -v "$(realpath "$cert"):/in/cert.pem:ro" -v "$(realpath "$key"):/in/key.pem:ro" \
      -v "$project-tls:/tls" "$image" -c '
        set -e
        a=$(openssl x509 -in /in/cert.pem -noout -pubkey) || { echo "not a PEM certificate" >&2; exit 3; }
        b=$(openssl pkey -in /in/key.pem -pubout) || { echo "not a PEM private key (or it has a passphrase)" >&2; exit 3; }
        [ "$a" = "$b" ] || { echo "the key does not belong to the certificate" >&2; exit 3; }
        install -o 33 -g 33 -m 0644 /in/cert.pem /tls/cert.pem
        install -o 33 -g 33 -m 0600 /in/key.pem /tls/key.pem
        rm -f /tls/self-signed' \
      || die "the certificate and key cannot be used (see above)"
    TLS_ARGS=(--hsts)
  elif [ "$self_signed" = true ] || [ "$self_signed" = 1 ] || [ "$self_signed" = yes ]; then
    hosts=$(setting APPLIANCE_PUBLIC_HOSTS)
    hosts=${hosts:-localhost,127.0.0.1,::1}
    say "HTTPS with a self-signed certificate for $hosts (browsers will ask to trust it)"
    docker run --rm --network none --user 0:0 --entrypoint sh -e "HOSTS=$hosts" \
      -v "$project-tls:/tls" "$image" -c '
        set -e
        [ "$(cat /tls/self-signed 2>/dev/null)" = "$HOSTS" ] && [ -f /tls/cert.pem ] && exit 0
        names=
        for host in $(echo "$HOSTS" | tr "," " "); do
          case "$host" in
            "*") continue ;;
            *:*) kind=IP ;;  # IPv6
            *[!0-9.]*) kind=DNS ;;
            *) kind=IP ;;
          esac
          names=${names:+$names,}$kind:$host
        done
        first=$(echo "$HOSTS" | cut -d, -f1)
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
          -days 825 -subj "/CN=${first#\*}" -addext "subjectAltName=${names:-DNS:localhost}" \
          -addext "basicConstraints=critical,CA:TRUE" \
          -addext "keyUsage=critical,digitalSignature,keyCertSign" -addext "extendedKeyUsage=serverAuth" \
          -keyout /tls/key.pem -out /tls/cert.pem 2>/dev/null
        chown 33:33 /tls/cert.pem /tls/key.pem; chmod 0644 /tls/cert.pem; chmod 0600 /tls/key.pem
        echo "$HOSTS" >/tls/self-signed' \
      || die "could not make a self-signed certificate"
  else
    docker volume rm "$project-tls" >/dev/null 2>&1 || true  # an earlier HTTPS is off now
    rm -f "compose/.state/$project-tls.crt"
    return 0
  fi
  TLS=on
  TLS_ARGS+=(--tls-certificate /etc/appliance/tls/cert.pem --tls-key /etc/appliance/tls/key.pem)
  docker run --rm --network none --entrypoint cat -v "$project-tls:/tls:ro" "$image" \
    /tls/cert.pem >"compose/.state/$project-tls.crt"
  TLS_DIGEST=$(docker run --rm --network none --user 0:0 --entrypoint sh -v "$project-tls:/tls:ro" \
    "$image" -c 'cat /tls/cert.pem /tls/key.pem | sha256sum' | cut -c1-16)
}
