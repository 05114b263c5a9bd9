//go:build tools

// Package tools pins the Kubernetes commands built by ../build.sh (control plane)
// and ../node-build.sh (kubelet, kube-proxy) from one k8s.io/kubernetes version.
// The build tag keeps this file out of normal builds; `go mod tidy` still sees the imports.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
