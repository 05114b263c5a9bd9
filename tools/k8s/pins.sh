# Pins: the single place where the versions built by build.sh (control plane) and node-build.sh
# (kubelet, kube-proxy, CoreDNS, local-path-provisioner) are chosen. The go.mod files in kube/, etcd/,
# kwok/, coredns/ and local-path/ are generated from these by `--update`; a normal build refuses to run
# if they disagree.
# shellcheck disable=SC2034  # read by the scripts that source this file
K8S_VERSION=v1.36.3   # k8s.io/kubernetes; every k8s.io/* staging module is replaced by v0.36.3
ETCD_VERSION=v3.6.16  # go.etcd.io/etcd/server/v3 (Kubernetes 1.36 uses etcd 3.6.x)
KWOK_VERSION=v0.8.0   # sigs.k8s.io/kwok (built against k8s.io/* v0.36.1)
COREDNS_VERSION=v1.15.0            # github.com/coredns/coredns (no replace lines)
LOCAL_PATH_VERSION=v0.0.30         # github.com/rancher/local-path-provisioner (no replace lines)
GO_LANG_VERSION=1.26.0
