// Command pod-router-kube is the upstream Kubernetes control plane and node,
// built from their Go modules at one release, as one multi-call binary:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
// and the node's kubelet and kube-proxy (docs/node.md).
//
// The component is chosen by the name the binary is called by (the cache
// holds a symlink per component) or by the first argument:
//
//	pod-router-kube kube-apiserver --help
//
// One binary rather than seven: the components share most of their code,
// so one link step and one cached file instead of seven copies of the same
// packages. Nothing here changes what a component does; it only dispatches,
// after the registrations every upstream main makes (the JSON log format,
// client-go's and the version's metrics).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// components maps each name to its upstream entry point, run with os.Args
// already rewritten so that os.Args[0] is the component's name.
var components = map[string]func() int{
	"etcd": func() int {
		etcdmain.Main(os.Args) // exits by itself on error
		return 0
	},
	"kube-apiserver":          func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int { return cli.Run(controllermanager.NewControllerManagerCommand()) },
	"kube-scheduler":          func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
	"kubectl":                 func() int { return cli.Run(kubectl.NewDefaultKubectlCommand()) },
	"kubelet":                 func() int { return cli.Run(kubelet.NewKubeletCommand(context.Background())) },
	"kube-proxy":              func() int { return cli.Run(proxy.NewProxyCommand()) },
}

func usage() {
	names := make([]string, 0, len(components))
	for name := range components {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: pod-router-kube COMPONENT [ARGS...]\n\ncomponents:\n")
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %s\n", name)
	}
	fmt.Fprintf(os.Stderr, "\nor call it through a symlink named after the component.\n")
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, found := components[name]; !found {
		if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
			usage()
			os.Exit(2)
		}
		name = os.Args[1]
		if _, found := components[name]; !found {
			fmt.Fprintf(os.Stderr, "pod-router-kube: unknown component %q\n\n", name)
			usage()
			os.Exit(2)
		}
		os.Args = os.Args[1:]
	}
	os.Exit(components[name]())
}
