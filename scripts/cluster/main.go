// Command pod-router-kube is the upstream Kubernetes control plane, built
// from its Go modules at one release, as one multi-call binary: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.
//
// The component is chosen by the name the binary is called by (the cache
// holds a symlink per component) or by the first argument:
//
//	pod-router-kube kube-apiserver --help
//
// One binary rather than five: the components share most of their code, so
// one link step and one cached file instead of five copies of the same
// packages. Nothing here changes what a component does; it only dispatches.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
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
