# A single-node Kubernetes cluster for tests and development, from the binaries that
# scripts/k8s-build makes (once, cached). Source it after services.sh and k8s-versions.sh.
#
#   k8s_up DIR       start etcd, containerd (its own root, state and socket: the Docker
#                    engine's is never touched), kube-apiserver, kube-controller-manager,
#                    kube-scheduler, kubelet, kube-proxy (nftables), kube-router (network
#                    policies only) and CoreDNS; everything under DIR; exports KUBECONFIG
#   k8s_import DIR IMAGE...   copy images from the Docker engine into the cluster (no registry)
#   k8s_down DIR     stop all of it and remove what it made: processes, pods' mounts, network
#                    links, the kubepods cgroups, iptables chains and nftables tables, DIR
#
# Addresses: the node (and the apiserver) 10.87.255.1 on an empty bridge (the kernel here has
# no "dummy" links), pods 10.88.0.0/16, Services 10.96.0.0/24, cluster DNS 10.96.0.10.
# K8S_NETPOL=0 leaves kube-router out (NetworkPolicies are then accepted but not enforced).

K8S_API_IP=${K8S_API_IP:-10.87.255.1}
K8S_POD_CIDR=${K8S_POD_CIDR:-10.88.0.0/16}
K8S_SVC_CIDR=${K8S_SVC_CIDR:-10.96.0.0/24}
K8S_DNS_IP=${K8S_DNS_IP:-10.96.0.10}
K8S_NODE=${K8S_NODE:-appliance-node}
K8S_API_LINK=appk8s-api0
K8S_POD_LINK=appk8s-pod0
K8S_CHAIN=APPLIANCE-K8S-FWD

k8s_start() { # k8s_start DIR NAME COMMAND...: a daemon, its log and pid file under DIR
  local dir=$1 name=$2; shift 2
  setsid "$@" >"$dir/log/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name.pid"
}

k8s_wait() { # k8s_wait DIR SECONDS WHAT COMMAND...
  local dir=$1 seconds=$2 what=$3; shift 3
  wait_for "$seconds" "$what" "$@" && return 0
  say "$what did not come up; last lines of the logs under $dir/log:"
  tail -n 5 "$dir"/log/*.log >&2 || true
  return 1
}

k8s_certificates() { # a throw-away CA, the apiserver's certificate, an admin client, SA keys
  local pki=$1/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=appliance-test-ca
    printf 'subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:%s,IP:%s\nextendedKeyUsage=serverAuth\n' \
      "${K8S_SVC_CIDR%.*}.1" "$K8S_API_IP" >server.ext
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out apiserver.crt -extfile server.ext
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=appliance-admin"
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out admin.crt -extfile client.ext
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$1/log/pki.log" 2>&1 || die "making the cluster's certificates failed ($1/log/pki.log)"
  local b64
  b64() { base64 -w0 <"$pki/$1"; }
  cat >"$1/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: appliance-test
  cluster: {server: "https://$K8S_API_IP:6443", certificate-authority-data: $(b64 ca.crt)}
users:
- name: admin
  user: {client-certificate-data: $(b64 admin.crt), client-key-data: $(b64 admin.key)}
contexts:
- name: appliance-test
  context: {cluster: appliance-test, user: admin, namespace: default}
current-context: appliance-test
EOF
}

k8s_containerd_config() {
  local dir=$1 cni_bin
  cni_bin=$(dirname "$(dpkg -L containernetworking-plugins | grep '/bridge$' | head -1)")
  cat >"$dir/containerd/config.toml" <<EOF
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = "$dir/containerd/sock"
[plugins.'io.containerd.internal.v1.opt']
  path = "$dir/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "appliance-k8s/pause:$K8S_VERSION"
[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = false
  # No CAP_SYS_RESOURCE in this sandbox: without it runc fails every pod with
  # "can't get final child's PID from pipe: EOF" (it cannot set oom_score_adj to -998).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$cni_bin"]
    conf_dir = "$dir/cni"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "$K8S_CACHE/bin/containerd-shim-runc-v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$dir/runc"
        SystemdCgroup = false
EOF
  cat >"$dir/cni/10-appliance.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "appliance-test",
 "plugins": [
  {"type": "bridge", "bridge": "$K8S_POD_LINK", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$dir/cni-ipam", "ranges": [[{"subnet": "$K8S_POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
EOF
}

k8s_kubelet_config() {
  local dir=$1
  cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$K8S_API_IP"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: "$dir/pki/ca.crt"}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false   # this machine is cgroup v1
failSwapOn: false
makeIPTablesUtilChains: false
containerRuntimeEndpoint: "unix://$dir/containerd/sock"
podLogsDir: "$dir/pod-logs"
resolvConf: /etc/resolv.conf
clusterDNS: ["$K8S_DNS_IP"]
clusterDomain: cluster.local
serializeImagePulls: false
podPidsLimit: 1024   # what the chart's runner.nodePidsLimit says (Kubernetes limits pids per node setting)
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
EOF
}

k8s_addon_images() { # the pause and CoreDNS images, each one static binary FROM scratch
  local dir=$1 name context
  for name in pause coredns; do
    local tag=appliance-k8s/$name:$K8S_VERSION
    [ "$name" = coredns ] && tag=appliance-k8s/coredns:$COREDNS_VERSION
    if ! docker image inspect "$tag" >/dev/null 2>&1; then
      context=$dir/image-$name
      mkdir -p "$context"
      cp "$K8S_CACHE/bin/$name" "$context/$name"
      printf 'FROM scratch\nCOPY %s /%s\nENTRYPOINT ["/%s"]\n' "$name" "$name" "$name" >"$context/Dockerfile"
      docker build -q -t "$tag" "$context" >"$dir/log/image-$name.log" 2>&1 \
        || die "building $tag failed ($dir/log/image-$name.log)"
      rm -rf "$context"
    fi
    echo "$tag"
  done
}

k8s_import() { # k8s_import DIR IMAGE...: from the Docker engine into the cluster's containerd
  local dir=$1; shift
  local image
  for image in "$@"; do
    docker save "$image" | "$K8S_CACHE/bin/ctr" -a "$dir/containerd/sock" -n k8s.io images import - \
      >/dev/null 2>>"$dir/log/import.log" \
      || die "importing $image into the cluster failed"
  done
}

k8s_up() {
  local dir=$1 bin=$K8S_CACHE/bin started=$SECONDS
  is_root || die "starting a Kubernetes cluster needs root"
  for tool in runc iptables nft openssl; do
    command -v $tool >/dev/null || apt_install runc iptables nftables openssl || die "$tool is missing"
  done
  [ -e /usr/lib/cni/bridge ] || dpkg -L containernetworking-plugins >/dev/null 2>&1 \
    || apt_install containernetworking-plugins || die "the CNI plugins are missing"
  command -v ipset >/dev/null || apt_install ipset || die "ipset is missing (kube-router needs it)"
  if { iptables-save; ip6tables-save; } 2>/dev/null | grep -qE "^:(KUBE-|$K8S_CHAIN)" \
      || nft list tables 2>/dev/null | grep -q kube-proxy; then
    die "Kubernetes firewall rules are already on this machine (another cluster?); stop it first"
  fi
  mkdir -p "$dir"/{log,pids,etcd,containerd,cni,cni-ipam,kubelet,pod-logs}
  export KUBECONFIG=$dir/admin.kubeconfig PATH=$bin:$PATH
  k8s_certificates "$dir"
  for d in /var/lib/kubelet /var/lib/cni; do [ -e $d ] || echo "$d" >>"$dir/created-dirs"; done
  ip link show $K8S_API_LINK >/dev/null 2>&1 || {
    ip link add $K8S_API_LINK type bridge && ip addr add "$K8S_API_IP/32" dev $K8S_API_LINK \
      && ip link set $K8S_API_LINK up; } || die "cannot make the node's network link"

  k8s_start "$dir" etcd "$bin/etcd" --name appliance --data-dir "$dir/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster appliance=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync --log-level warn
  k8s_containerd_config "$dir"
  k8s_start "$dir" containerd "$bin/containerd" --config "$dir/containerd/config.toml"
  k8s_wait "$dir" 30 "containerd" test -S "$dir/containerd/sock" || die "containerd did not start"
  k8s_import "$dir" $(k8s_addon_images "$dir")
  k8s_wait "$dir" 30 "etcd" curl -sf http://127.0.0.1:2379/health || die "etcd did not start"

  k8s_start "$dir" kube-apiserver "$bin/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address="$K8S_API_IP" --advertise-address="$K8S_API_IP" --secure-port=6443 \
    --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" --kubelet-client-certificate="$dir/pki/admin.crt" \
    --kubelet-client-key="$dir/pki/admin.key" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/pki/sa.pub" --service-account-signing-key-file="$dir/pki/sa.key" \
    --service-cluster-ip-range="$K8S_SVC_CIDR" --authorization-mode=Node,RBAC \
    --allow-privileged=true --profiling=false --v=1
  k8s_wait "$dir" 120 "kube-apiserver" kubectl get --raw /readyz || die "kube-apiserver did not start"
  local kc=(--kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG"
            --authorization-kubeconfig="$KUBECONFIG" --bind-address=127.0.0.1 --leader-elect=false --v=1)
  k8s_start "$dir" kube-controller-manager "$bin/kube-controller-manager" "${kc[@]}" \
    --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --cluster-signing-cert-file="$dir/pki/ca.crt" --cluster-signing-key-file="$dir/pki/ca.key" \
    --use-service-account-credentials=false --controllers='*'
  k8s_start "$dir" kube-scheduler "$bin/kube-scheduler" "${kc[@]}"
  k8s_kubelet_config "$dir"
  k8s_start "$dir" kubelet "$bin/kubelet" --config="$dir/kubelet/config.yaml" --kubeconfig="$KUBECONFIG" \
    --root-dir="$dir/kubelet" --cert-dir="$dir/kubelet/pki" --hostname-override="$K8S_NODE" \
    --node-ip="$K8S_API_IP" --v=1
  k8s_wait "$dir" 120 "the default service account" kubectl get serviceaccount default || die "no service account"
  k8s_wait "$dir" 120 "node $K8S_NODE" kubectl wait --for=condition=Ready "node/$K8S_NODE" --timeout=1s \
    || die "the node did not become Ready"
  k8s_network "$dir"
  say "Kubernetes $K8S_VERSION up in $((SECONDS - started)) s (KUBECONFIG=$KUBECONFIG)"
}

k8s_network() { # Services (kube-proxy), NetworkPolicy (kube-router), cluster DNS (CoreDNS)
  local dir=$1 bin=$K8S_CACHE/bin
  nft list ruleset 2>/dev/null | awk '/^table /{t=$2" "$3} /^\tchain /{print t" "$2}' >"$dir/nft-chains.before"
  nft list tables >"$dir/nft-tables.before" 2>/dev/null || true
  # The Docker engine sets FORWARD's policy to DROP, which drops pod-to-pod traffic on the
  # bridge too: one chain of ours, appended after the engine's rules, lets it through.
  iptables -w -N $K8S_CHAIN 2>/dev/null || iptables -w -F $K8S_CHAIN
  iptables -w -A $K8S_CHAIN -i $K8S_POD_LINK -j ACCEPT
  iptables -w -A $K8S_CHAIN -o $K8S_POD_LINK -j ACCEPT
  iptables -w -C FORWARD -j $K8S_CHAIN 2>/dev/null || iptables -w -A FORWARD -j $K8S_CHAIN
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$KUBECONFIG"}
hostnameOverride: $K8S_NODE
mode: nftables   # its own tables; iptables mode would jump ahead of the Docker engine's rules
clusterCIDR: $K8S_POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$K8S_API_IP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  k8s_start "$dir" kube-proxy "$bin/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1
  k8s_wait "$dir" 60 "kube-proxy" curl -sf http://127.0.0.1:10256/healthz || die "kube-proxy did not start"
  if [ "${K8S_NETPOL:-1}" = 1 ]; then
    k8s_start "$dir" kube-router "$bin/kube-router" --kubeconfig="$KUBECONFIG" --hostname-override="$K8S_NODE" \
      --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
      --enable-cni=false --health-port=0 --metrics-port=0 --service-cluster-ip-range="$K8S_SVC_CIDR" --v=1
    # its first full sync ends KUBE-ROUTER-FORWARD with an explicit ACCEPT (mark 0x20000)
    k8s_wait "$dir" 60 "kube-router (network policies)" \
      sh -c 'iptables -w -S KUBE-ROUTER-FORWARD | grep -q 0x20000/0x20000' || die "kube-router did not start"
  fi
  sed -e "s#@COREDNS_IMAGE@#appliance-k8s/coredns:$COREDNS_VERSION#" -e "s#@DNS_IP@#$K8S_DNS_IP#" \
    scripts/lib/k8s-coredns.yaml | kubectl apply -f - >/dev/null
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null \
    || die "CoreDNS did not start"
}

k8s_stop_pids() { # k8s_stop_pids DIR NAME...: SIGTERM, up to 10 s, then SIGKILL
  local dir=$1 name pid pids=(); shift
  for name in "$@"; do
    [ -s "$dir/pids/$name.pid" ] && pids+=("$(cat "$dir/pids/$name.pid")") && rm -f "$dir/pids/$name.pid"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "${pids[@]}" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

k8s_clean_firewall() { # only what kube-proxy, kube-router and k8s_network made
  local - dir=$1 ipt t rule chain
  set +e +o pipefail  # a cleanup tries every step
  for ipt in iptables ip6tables; do
    for t in filter nat mangle raw; do
      $ipt -w -t $t -S >/dev/null 2>&1 || continue
      # rules of other chains that jump to ours, then our chains themselves
      $ipt -w -t $t -S | grep -E "^-A " | grep -vE "^-A (KUBE-|$K8S_CHAIN)" \
        | grep -E -- "-[jg] (KUBE-[A-Z0-9-]+|$K8S_CHAIN)( |$)" | while read -r rule; do
          eval "$ipt -w -t $t ${rule/-A /-D }" || true
        done
      for chain in $($ipt -w -t $t -S | awk '$1 == "-N" {print $2}' | grep -E "^(KUBE-|$K8S_CHAIN$)"); do
        $ipt -w -t $t -F "$chain"
      done
      for chain in $($ipt -w -t $t -S | awk '$1 == "-N" {print $2}' | grep -E "^(KUBE-|$K8S_CHAIN$)"); do
        $ipt -w -t $t -X "$chain" || true
      done
    done
  done
  for family in ip ip6 inet; do nft delete table $family kube-proxy 2>/dev/null || true; done
  for set in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-'); do ipset destroy "$set" || true; done
  # empty nftables chains and tables that iptables-nft made on the way
  if [ -f "$dir/nft-chains.before" ]; then
    nft list ruleset 2>/dev/null | awk '/^table /{t=$2" "$3} /^\tchain /{print t" "$2}' \
      | grep -vxFf "$dir/nft-chains.before" | while read -r family table chain; do
        nft list chain "$family" "$table" "$chain" 2>/dev/null | grep -vqE '^\s*(table |chain |type |\}|$|#)' \
          || nft delete chain "$family" "$table" "$chain" 2>/dev/null || true
      done
  fi
  if [ -f "$dir/nft-tables.before" ]; then
    nft list tables 2>/dev/null | grep -vxFf "$dir/nft-tables.before" | while read -r _ family table; do
      nft list table "$family" "$table" | grep -vqE '^\s*(table |chain |type |\}|$|#)' \
        || nft delete table "$family" "$table" 2>/dev/null || true
    done
  fi
}

k8s_down() {
  local - dir=$1 sock
  set +e +o pipefail  # a cleanup tries every step
  [ -d "$dir" ] || return 0
  sock=$dir/containerd/sock
  k8s_stop_pids "$dir" kubelet
  if [ -S "$sock" ]; then  # the pods' containers, then their sandboxes (network namespaces)
    local crictl=("$K8S_CACHE/bin/crictl" --config /dev/null --runtime-endpoint "unix://$sock" --timeout 30s)
    local pods
    pods=$("${crictl[@]}" pods -q 2>/dev/null || true)
    if [ -n "$pods" ]; then
      "${crictl[@]}" stopp $pods >/dev/null 2>&1 || true
      "${crictl[@]}" rmp -f $pods >/dev/null 2>&1 || true
    fi
  fi
  k8s_stop_pids "$dir" kube-router kube-proxy
  k8s_clean_firewall "$dir"
  k8s_stop_pids "$dir" kube-scheduler kube-controller-manager kube-apiserver containerd
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  k8s_stop_pids "$dir" etcd
  grep -F " $dir/" /proc/mounts | awk '{print $2}' | sort -r | while read -r mount; do
    umount -l "$mount" 2>/dev/null || true
  done
  ip link del $K8S_POD_LINK 2>/dev/null || true
  ip link del $K8S_API_LINK 2>/dev/null || true
  if [ -f "$dir/created-dirs" ]; then
    while read -r made; do rm -rf "$made"; done <"$dir/created-dirs"
  fi
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$hierarchy" ] && find "$hierarchy" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$dir"
}
