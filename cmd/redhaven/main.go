// Command redhaven runs the redhaven agent and talks to a running one.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strings"

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
	"route":        {"`route reset` clears the committed route so that routing follows Sentinel again", runRoute},
	"keys":         {"rotate the cluster key on every member: keys list|install|use|remove", runKeys},
	"backend":      {"set a Redis backend's admin state: backend ready|drain|maintenance ADDR", runBackend},
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
status, members, failover, backend, route, keys, join and leave talk to
the agent on this host over its admin socket (http.admin_socket, default
/run/redhaven/admin.sock; root and the agent's group may use it), or with
--addr http://HOST:8404 --user NAME to an agent's HTTP API (actions need an
http.auth admin user). Actions that need the Raft leader may be sent to
any agent: a follower forwards them, and the CLI says which node acted.
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

// loadConfig parses flags and loads the config; "" path means the default.
func loadConfig(fs *pflag.FlagSet, args []string) (node.Config, error) {
	if err := fs.Parse(args); err != nil {
		return node.Config{}, err
	}
	if fs.NArg() > 0 {
		return node.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	path := ""
	if fs.Changed("config") {
		path, _ = fs.GetString("config")
	}
	cfg, err := node.LoadConfig(path, os.Environ(), fs)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	ho, herr := takeHandoverSocket() // before the config: its variable is not a config key
	fs := configFlags("agent", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: redhaven agent [-c FILE] [flags]\n\nRun the agent in the foreground until SIGINT/SIGTERM.\nSIGHUP reloads the config, SIGUSR2 restarts the agent without closing client\nconnections (README: Restart, upgrade, reload).\n\nFlags:\n%s", fs.FlagUsages())
	}
	cfg, err := loadConfig(fs, args)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "redhaven agent: %s\n", indentErr(err))
		return 2
	}
	if herr != nil {
		fmt.Fprintf(stderr, "redhaven agent: %v\n", herr)
		return 1
	}
	logger, level := node.NewLeveledLogger(cfg.Log, stderr)
	setGOMAXPROCS(logger)
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	p := &agentProc{args: args, cfg: cfg, logger: logger, level: level, exe: exe, exeID: statID(exe), ho: ho,
		loadConfig: func() (node.Config, error) { return loadConfig(configFlags("agent", io.Discard), args) }}
	return p.serve(stderr)
}

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := configFlags("check-config", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: redhaven check-config [-c FILE] [flags]\n\nLoad and validate the configuration exactly as the agent would, and\nname every bad key. Exit status 0 when valid, 1 when not.\n\nFlags:\n%s", fs.FlagUsages())
	}
	cfg, err := loadConfig(fs, args)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "configuration is invalid:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 1
	}
	fmt.Fprintf(stdout, "configuration is valid: node %s, %d sentinel(s) for master %q, proxy on %s\n",
		cfg.NodeName, len(cfg.Redis.Sentinels), cfg.Redis.MasterName, cfg.Proxy.Listen)
	return 0
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "redhaven %s\n", version)
	return 0
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
