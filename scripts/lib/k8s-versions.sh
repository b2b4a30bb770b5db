# Versions of the single-node test cluster (scripts/k8s-build, scripts/lib/k8s.sh).
# Changing any of them makes a new cache folder; the old one can be deleted by hand.
K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.1.0}
K8S_RECIPE=1  # bump when scripts/k8s-build changes what it makes
K8S_CACHE=${APPLIANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/appliance}/kubernetes-$K8S_VERSION-$(
  printf '%s ' "$ETCD_VERSION" "$CONTAINERD_VERSION" "$CRICTL_VERSION" "$HELM_VERSION" \
    "$COREDNS_VERSION" "$KUBE_ROUTER_VERSION" "$K8S_RECIPE" | sha256sum | cut -c1-10)
