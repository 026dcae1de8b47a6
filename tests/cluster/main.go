// Command testcluster bundles the pieces of a local Kubernetes control plane
// for end-to-end tests into one binary: an embedded etcd server and the
// upstream kube-apiserver, kube-controller-manager and kube-scheduler
// commands, linked as libraries.
//
// Each component runs as its own process of this binary, selected by the
// first argument:
//
//	testcluster etcd --data-dir DIR --client-port N --peer-port N
//	testcluster kube-apiserver [standard kube-apiserver flags]
//	testcluster kube-controller-manager [standard flags]
//	testcluster kube-scheduler [standard flags]
//
// Separate processes keep the components' process-global registries
// (feature gates, metrics, flag sets) from clashing with each other.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as in the upstream mains
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as in the upstream mains
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as in the upstream mains
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// commands maps each sub-command name to a constructor of its cobra command.
// Constructors are only called for the selected sub-command so that the
// others never touch process-global state.
var commands = map[string]func() *cobra.Command{
	"etcd":                    newEtcdCommand,
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testcluster etcd|kube-apiserver|kube-controller-manager|kube-scheduler [flags]")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	newCommand, ok := commands[os.Args[1]]
	if !ok {
		usage()
		os.Exit(2)
	}
	command := newCommand()
	// The upstream commands parse os.Args[1:]; drop our sub-command name.
	command.SetArgs(os.Args[2:])
	os.Exit(cli.Run(command))
}
