// Command redhaven runs the redhaven agent and talks to a running one.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/redhaven/redhaven/node"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// command is one sub-command.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"agent":        {"run the agent: watch Redis and Sentinel, proxy clients to the master", runAgent},
	"check-config": {"validate a config file (and REDHAVEN_* environment) and print the result", runCheckConfig},
	"version":      {"print the version", runVersion},
	"keygen":       {"print a new cluster key for cluster.encrypt (gossip encryption and Raft TLS)", runKeygen},
	"passwd":       {"print the bcrypt hash of a password for http.auth (read without echo)", runPasswd},
	"status":       {"show the leader, the committed master and whether this node routes", runStatus},
	"members":      {"list the cluster's nodes (gossip state, Raft role, last contact); `members remove NAME` removes a failed one", runMembers},
	"failover":     {"planned failover: pause writes, fail over through Sentinel, resume", runFailover},
	"join":         {"ask the local agent to join the cluster through a gossip address", runJoinLeave("join")},
	"leave":        {"make the local agent leave the cluster gracefully", runJoinLeave("leave")},
}

func main() {
	node.Version = version
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "redhaven: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `redhaven %s: high availability for Redis + Sentinel in one binary.

Usage: redhaven <command> [flags]

Commands:
`, version)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, `
Run "redhaven <command> --help" for a command's flags.
status, members, failover, join and leave talk to the agent on this host
over its admin socket (http.admin_socket, default /run/redhaven/admin.sock;
root and the agent's group may use it), or with --addr http://HOST:8404
--user NAME to an agent's HTTP API (actions need an http.auth admin user).
Configuration: defaults, then the YAML file (-c, default %s),
then REDHAVEN_* environment variables (REDHAVEN_PROXY__HOLD_TIMEOUT=2s sets
proxy.hold_timeout), then flags.
`, node.DefaultConfigPath)
}

// configFlags returns a flag set with the config flags, for agent and check-config.
func configFlags(name string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	node.Flags(fs)
	return fs
}

// loadConfig parses flags and checks the config ("" path means the
// default): every problem at once, or the warnings of a valid one.
func loadConfig(fs *pflag.FlagSet, args []string) (node.Config, []string, error) {
	if err := fs.Parse(args); err != nil {
		return node.Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return node.Config{}, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	path := ""
	if fs.Changed("config") {
		path, _ = fs.GetString("config")
	}
	return node.Check(path, os.Environ(), fs)
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	fs := configFlags("agent", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: redhaven agent [-c FILE] [flags]\n\nRun the agent in the foreground until SIGINT/SIGTERM.\n\nFlags:\n%s", fs.FlagUsages())
	}
	cfg, warnings, err := loadConfig(fs, args)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "redhaven agent: %s\n", indentErr(err))
		return 2
	}
	logger := node.NewLogger(cfg.Log, stderr)
	for _, w := range warnings {
		logger.Warn("config setting has no effect", "warning", w)
	}
	setGOMAXPROCS(logger)
	n, err := node.New(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "redhaven agent: %s\n", indentErr(err))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills the process the default way
	}()
	if err := n.Run(ctx); err != nil {
		logger.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := configFlags("check-config", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: redhaven check-config [-c FILE] [flags]\n\nLoad and validate the configuration exactly as the agent would, and\nname every bad key. Exit status 0 when valid, 1 when not.\n\nFlags:\n%s", fs.FlagUsages())
	}
	cfg, warnings, err := loadConfig(fs, args)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		n := len(flattenErrs(err))
		fmt.Fprintf(stderr, "configuration is invalid (%d problem%s):\n  %s\n", n, map[bool]string{true: "s"}[n > 1], indentErr(err))
		return 1
	}
	fmt.Fprintf(stdout, "configuration is valid; the agent will run:\n%s", cfg.Summary())
	if len(warnings) > 0 {
		fmt.Fprintf(stderr, "warnings (settings that have no effect):\n")
		for _, w := range warnings {
			fmt.Fprintf(stderr, "  %s\n", w)
		}
	}
	return 0
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "redhaven %s\n", version)
	return 0
}

// flattenErrs splits joined errors into their leaves.
func flattenErrs(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrs(e)...)
		}
		return out
	}
	return []error{err}
}

func indentErr(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "\n  ")
}

func runKeygen(args []string, stdout, stderr io.Writer) int {
	key, err := node.GenerateKey()
	if err != nil {
		fmt.Fprintf(stderr, "redhaven keygen: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, key)
	return 0
}

// setGOMAXPROCS runs the agent on half the CPUs Go would use (at least
// one) unless GOMAXPROCS is set: Redis, and often the clients, share the
// machine, and the proxy's syscalls do not get faster with more threads
// competing for the same cores. Measured on 2 cores (README, "GOMAXPROCS"):
// 1 beat 2 at pipeline 1 and 16, pinned or not.
func setGOMAXPROCS(logger *slog.Logger) {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		logger.Info("GOMAXPROCS from the environment", "gomaxprocs", runtime.GOMAXPROCS(0))
		return
	}
	cpus := runtime.GOMAXPROCS(0)
	n := max(1, cpus/2)
	runtime.GOMAXPROCS(n)
	logger.Info("GOMAXPROCS set to half the usable CPUs (set GOMAXPROCS to override)", "gomaxprocs", n, "cpus", cpus)
}
