package main

import (
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/embed"
)

// etcdOptions are the few knobs a single-member test etcd needs.
type etcdOptions struct {
	name          string
	dataDir       string
	host          string
	clientPort    int
	peerPort      int
	readyTimeout  time.Duration
	logLevel      string
	unsafeNoFsync bool
}

// newEtcdCommand returns the "etcd" sub-command: a single-member etcd server
// embedded from the same etcd release line Kubernetes is tested against
// (distribution packages ship releases too old for current apiservers).
func newEtcdCommand() *cobra.Command {
	o := &etcdOptions{}
	cmd := &cobra.Command{
		Use:          "etcd",
		Short:        "Run a single-member embedded etcd server until SIGTERM",
		SilenceUsage: true,
		RunE: func(*cobra.Command, []string) error {
			return runEtcd(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "testcluster", "member name")
	f.StringVar(&o.dataDir, "data-dir", "", "data directory (required)")
	f.StringVar(&o.host, "host", "127.0.0.1", "address to listen on and advertise")
	f.IntVar(&o.clientPort, "client-port", 2379, "client port")
	f.IntVar(&o.peerPort, "peer-port", 2380, "peer port")
	f.DurationVar(&o.readyTimeout, "ready-timeout", 60*time.Second, "how long to wait for the server to become ready")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	f.BoolVar(&o.unsafeNoFsync, "unsafe-no-fsync", false, "skip fsync (faster, loses data on a crash; fine for throwaway test data)")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

func hostURL(host string, port int) url.URL {
	return url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", host, port)}
}

func runEtcd(o *etcdOptions) error {
	cfg := embed.NewConfig()
	cfg.Name = o.name
	cfg.Dir = o.dataDir
	cfg.LogLevel = o.logLevel
	cfg.UnsafeNoFsync = o.unsafeNoFsync
	client := hostURL(o.host, o.clientPort)
	peer := hostURL(o.host, o.peerPort)
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	// Subscribe before starting so a SIGTERM during start-up is not lost.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer server.Close()

	select {
	case <-server.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd ready, serving clients on %s\n", client.String())
	case <-time.After(o.readyTimeout):
		server.Server.Stop()
		return fmt.Errorf("etcd not ready after %s", o.readyTimeout)
	case sig := <-signals:
		return fmt.Errorf("interrupted by %s during start-up", sig)
	}

	select {
	case err := <-server.Err():
		return fmt.Errorf("etcd failed: %w", err)
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "etcd stopping on %s\n", sig)
		return nil
	}
}
