package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// command is one sub-command. The usage, each command's --help, the man
// page (packaging/man/redhaven.1) and the bash completion are all made
// from the commands table below; adding a command is adding an entry,
// e.g. one that talks to the agent and takes one argument:
//
//	{name: "keys install", summary: "...", args: "KEY", minArgs: 1, maxArgs: 1,
//		desc: "..." + apiHelp, examples: []string{"redhaven keys install KEY"},
//		setup: apiCommand(runKeysInstall)}, // func(o *apiOpts, args []string, stdout, stderr io.Writer) int
//
// then `go test ./cmd/redhaven -run TestManPage -update` (the test fails
// while the man page and completion are stale). The flags are parsed and
// the number of arguments checked before run is called.
type command struct {
	name     string   // "status"; "members remove" for a sub-command of members
	summary  string   // one line for the command list
	args     string   // what follows the flags in the synopsis, e.g. "ADDR..."
	minArgs  int      // arguments after the flags
	maxArgs  int      // -1: any number
	argsNote string   // said after a wrong number of arguments
	desc     string   // paragraphs separated by blank lines
	examples []string // command lines, each may end with "  # comment"
	// setup registers the command's flags and returns the function that
	// runs it once the flags are parsed (nil setup: no flags).
	setup func(fs *pflag.FlagSet) runFunc
}

// runFunc runs a command with the arguments left after its flags and
// returns the exit status.
type runFunc func(args []string, stdout, stderr io.Writer) int

// Exit statuses of every command.
const (
	exitOK          = 0
	exitError       = 1 // the command ran and failed: invalid config, refused request, agent error
	exitUsage       = 2 // bad flag, missing or extra argument, unknown command; agent: invalid configuration
	exitNotRouting  = 3 // status: this node does not route writes (no leader, no committed master, out of contact)
	exitUnreachable = 4 // the agent could not be reached (not running, wrong socket or address, no permission)
	// exitRestart: the agent stopped so that its supervisor starts it
	// again (a hand-over restart the new process refused: an older
	// binary, after a downgrade, with several services);
	// systemd's Restart=on-failure does. EX_TEMPFAIL of sysexits.h.
	exitRestart = 75
)

const exitStatusHelp = `0 success; 1 the command failed (invalid configuration, request refused,
agent error); 2 usage error (unknown command or flag, missing or extra
argument; agent: invalid configuration); 3 status: this node does not route writes (no Raft leader, no
committed master, or out of contact with the quorum); 4 the agent could
not be reached (not running, wrong --socket or --addr, no permission); 75 agent: stopped to be
started again by its supervisor (a hand-over restart the new process refused, e.g. an older binary with several services).`

// apiHelp is said by every command that talks to an agent.
const apiHelp = `It talks to the agent on this host over its admin socket
(http.admin_socket, default /run/redhaven/admin.sock; root and members of
the agent's group may use it), or with --addr to any agent's HTTP API
(actions then need an http.auth user with role admin: --user, password
from REDHAVEN_HTTP_PASSWORD or asked on the terminal).`

var commands = []command{
	{
		name: "agent", summary: "run the agent: watch Redis and Sentinel, proxy clients to the master",
		desc: `Run the agent in the foreground until SIGINT or SIGTERM (a second signal stops at once). ` +
			`The configuration is loaded as by check-config; warnings about settings that have no effect are logged at start. ` +
			`SIGHUP reloads the configuration: log.level, http.auth, proxy.hold_timeout, proxy.max_clients, proxy.prefer_replica, redis.max_replica_lag, proxy.client_output_limit, proxy.auth_timeout, proxy.client_idle_timeout and proxy.max_clients_per_ip change live; any other changed key, or a new binary at the same path, makes a hand-over restart, and the log names the keys. It also reads the proxy.tls and redis.tls certificate, key and CA files again (new connections use them; a file that fails to load is logged and the one in use stays). ` +
			`SIGUSR2 is a hand-over restart: the binary at the same path starts again and takes over the listeners and every client connection of every service (by service name; a service removed from the configuration has its clients closed, a new one starts), so clients see a pause, not a closed connection (systemctl reload does this). ` +
			`Under systemd the packaged unit runs "redhaven agent -c /etc/redhaven/redhaven.yaml".`,
		examples: []string{"redhaven agent -c /etc/redhaven/redhaven.yaml", "redhaven agent --log-level debug --proxy-listen :7000"},
		setup:    configCommand(runAgent),
	},
	{
		name: "check-config", summary: "check a config file (and REDHAVEN_* environment): every problem, warnings, and what the agent will do",
		desc: `Load the configuration exactly as the agent would (defaults, the file, REDHAVEN_* environment, flags) and report every problem at once, each naming the key, the value and what is expected. ` +
			`A valid configuration prints a summary of what the agent will do (listeners, Sentinels, cluster join and size, VIP) and, on stderr, warnings about settings that have no effect.`,
		examples: []string{"redhaven check-config -c /etc/redhaven/redhaven.yaml", "REDHAVEN_PROXY__HOLD_TIMEOUT=2s redhaven check-config"},
		setup:    configCommand(runCheckConfig),
	},
	{
		name: "status", summary: "show the leader, the committed master and whether this node routes writes",
		desc: "Show this node, the Raft leader, the committed master with its epoch, whether this node may route writes, and the VIP holder. " +
			"Exit status 3 when this node does not route writes.\n\n" + apiHelp,
		examples: []string{"redhaven status", "redhaven status --addr http://10.0.0.11:8404"},
		setup:    apiCommand(runStatus),
	},
	{
		name: "members", summary: "list the cluster's nodes: gossip state, Raft role, last contact, version",
		desc: "List the nodes of the cluster as this agent sees them: gossip address and state, Raft role and address, " +
			"the last contact of each follower with the leader (on the leader), and the version.\n\n" + apiHelp,
		examples: []string{"redhaven members", "redhaven members --addr 10.0.0.11:8404"},
		setup:    apiCommand(runMembers),
	},
	{
		name: "members remove", summary: "remove a failed server from the Raft configuration",
		args: "NAME", minArgs: 1, maxArgs: 1, argsNote: "give exactly one member name, as `redhaven members` shows it",
		desc: "Remove the failed server NAME (as `redhaven members` shows it) from the Raft configuration. " +
			"Run it against the leader's agent; it is refused when it would cost the quorum.\n\n" + apiHelp,
		examples: []string{"redhaven members remove node3"},
		setup:    apiCommand(runMembersRemove),
	},
	{
		name: "failover", summary: "planned failover: pause writes, fail over through Sentinel, resume",
		args: "[SERVICE]", minArgs: 0, maxArgs: 1, argsNote: "give at most one service name (see status)",
		desc: "Ask the leader for a planned failover of SERVICE (Sentinel's master name; may be left out when the agent " +
			"routes one service): writes are held, the replicas catch up, SENTINEL FAILOVER runs, " +
			"and writes resume on the new master. Waits up to 60s for the new master. When the leader aborts the failover " +
			"(e.g. no replica caught up in time), writes resume on the old master and the command exits 1 at once with the leader's reason. " +
			"The other services are not touched.\n\n" + apiHelp,
		examples: []string{"redhaven failover", "redhaven failover cache", "redhaven failover --addr http://10.0.0.11:8404 --user ops"},
		setup:    apiCommand(runFailover),
	},
	{
		name: "join", summary: "make the local agent join the cluster through gossip addresses",
		args: "ADDR...", minArgs: 1, maxArgs: -1, argsNote: "give at least one gossip address of a running agent (host:port)",
		desc:     "Make the agent join a running cluster through the gossip address (host:port, cluster.bind of another node) of at least one of its agents.\n\n" + apiHelp,
		examples: []string{"redhaven join 10.0.0.11:7946"},
		setup:    apiCommand(runJoin),
	},
	{
		name: "leave", summary: "make the local agent leave the cluster gracefully",
		desc:     "Make the agent leave the cluster: it is removed from the Raft configuration and stops routing writes.\n\n" + apiHelp,
		examples: []string{"redhaven leave"},
		setup:    apiCommand(runLeave),
	},
	{
		name: "route reset", summary: "clear the committed route so that routing follows Sentinel again",
		args: "[SERVICE]", minArgs: 0, maxArgs: 1, argsNote: "give at most one service name (see status)",
		desc: "Clear the committed route of SERVICE (may be left out when the agent routes one service; a master that the watchers contradict, or an epoch that no Sentinel reaches) " +
			"so that the leader commits the master Sentinel reports again. It names the route it read: a route committed " +
			"in between is left alone (exit 1, HTTP 409). A follower's agent forwards it to the leader.\n\n" + apiHelp,
		examples: []string{"redhaven route reset", "redhaven route reset cache"},
		setup:    apiCommand(runRouteReset),
	},
	{
		name: "backend ready", summary: "let a drained or maintained Redis backend take sessions again",
		args: "ADDR", minArgs: 1, maxArgs: 1, argsNote: "give exactly one backend address host:port (see the stats page or status)",
		desc:     "Set the admin state of the Redis backend ADDR to ready, committed through Raft by the leader (a follower's agent forwards it).\n\n" + apiHelp,
		examples: []string{"redhaven backend ready 10.0.0.12:6379"},
		setup:    apiCommand(runBackendState("ready")),
	},
	{
		name: "backend drain", summary: "no new sessions to a Redis backend; existing ones stay",
		args: "ADDR", minArgs: 1, maxArgs: 1, argsNote: "give exactly one backend address host:port (see the stats page or status)",
		desc:     "Set the admin state of the Redis backend ADDR to drain: no new sessions go to it, existing ones stay.\n\n" + apiHelp,
		examples: []string{"redhaven backend drain 10.0.0.12:6379"},
		setup:    apiCommand(runBackendState("drain")),
	},
	{
		name: "backend maintenance", summary: "take a Redis backend out of service",
		args: "ADDR", minArgs: 1, maxArgs: 1, argsNote: "give exactly one backend address host:port (see the stats page or status)",
		desc:     "Set the admin state of the Redis backend ADDR to maintenance: it gets no traffic.\n\n" + apiHelp,
		examples: []string{"redhaven backend maintenance 10.0.0.12:6379"},
		setup:    apiCommand(runBackendState("maintenance")),
	},
	{
		name: "keys list", summary: "show every member's cluster keys (fingerprints)",
		desc:     "Show the cluster keys installed on every member, as fingerprints, and which one is primary.\n\n" + apiHelp,
		examples: []string{"redhaven keys list"},
		setup:    apiCommand(runKeysOp("list")),
	},
	{
		name: "keys install", summary: "install a new cluster key on every member (read from stdin)",
		argsNote: "the key is read from the terminal or standard input, never from the command line",
		desc: "First step of a key rotation: install the key read from the terminal (without echo) or the first line of standard input " +
			"on every member, over the cluster's own mutual TLS (never through Raft: no key lands in raft.db). " +
			"A member that is down is reported; run the step again. Then `keys use`, update cluster.encrypt in every config file, then `keys remove` the old key.\n\n" + apiHelp,
		examples: []string{"redhaven keygen > new.key && redhaven keys install < new.key"},
		setup:    apiCommand(runKeysOp("install")),
	},
	{
		name: "keys use", summary: "make an installed key the primary one on every member",
		argsNote: "the key is read from the terminal or standard input, never from the command line",
		desc:     "Second step of a key rotation: make the key (read from the terminal or standard input) primary on every member; refused when a member lacks it.\n\n" + apiHelp,
		examples: []string{"redhaven keys use < new.key"},
		setup:    apiCommand(runKeysOp("use")),
	},
	{
		name: "keys remove", summary: "remove a cluster key from every member",
		argsNote: "the key is read from the terminal or standard input, never from the command line",
		desc:     "Last step of a key rotation: remove the old key (read from the terminal or standard input) from every member; refused for a primary key.\n\n" + apiHelp,
		examples: []string{"redhaven keys remove < old.key"},
		setup:    apiCommand(runKeysOp("remove")),
	},
	{
		name: "keygen", summary: "print a new cluster key for cluster.encrypt",
		desc: "Print a new random cluster key (base64, 32 bytes) for cluster.encrypt: it encrypts and authenticates the gossip, " +
			"and every node derives the Raft TLS CA from it. Put the same key on every node.",
		examples: []string{"redhaven keygen"},
		setup:    noFlags(runKeygen),
	},
	{
		name: "passwd", summary: "print the bcrypt hash of a password for http.auth",
		argsNote: "the password is read from the terminal or standard input, never from the command line",
		desc: "Print the bcrypt hash of a password for http.auth[].password_hash. " +
			"On a terminal the password is asked twice without echo; otherwise it is the first line of standard input. " +
			"It is never taken from the command line.",
		examples: []string{"redhaven passwd", `printf '%s\n' "$PW" | redhaven passwd`},
		setup:    noFlags(runPasswd),
	},
	{
		name: "version", summary: "print the version, commit, build date and Go version",
		examples: []string{"redhaven version"},
		setup:    noFlags(runVersion),
	},
}

func noFlags(run runFunc) func(*pflag.FlagSet) runFunc {
	return func(*pflag.FlagSet) runFunc { return run }
}

// findCommand returns the command that args start with (the longest
// name: "members remove" before "members") and the rest of args.
func findCommand(args []string) (*command, []string) {
	var best *command
	words := 0
	for i := range commands {
		parts := strings.Fields(commands[i].name)
		if len(parts) > len(args) || len(parts) <= words {
			continue
		}
		match := true
		for j, p := range parts {
			match = match && args[j] == p
		}
		if match {
			best, words = &commands[i], len(parts)
		}
	}
	if best == nil {
		return nil, args
	}
	return best, args[words:]
}

// newFlagSet makes c's flag set and its runner; nothing is parsed yet.
func (c *command) newFlagSet() (*pflag.FlagSet, runFunc) {
	fs := pflag.NewFlagSet("redhaven "+c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by runCommand
	fs.SortFlags = false
	var run runFunc
	if c.setup != nil {
		run = c.setup(fs)
	}
	return fs, run
}

// runCommand parses c's flags and checks its arguments: --help prints
// the help on stdout (exit 0); a usage error prints the error and the
// usage on stderr (exit 2).
func runCommand(c *command, args []string, stdout, stderr io.Writer) int {
	fs, run := c.newFlagSet()
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		c.help(stdout, fs, true)
		return exitOK
	}
	if err == nil {
		switch n := fs.NArg(); {
		case n < c.minArgs:
			err = fmt.Errorf("missing %s", c.args)
		case c.maxArgs >= 0 && n > c.maxArgs:
			err = fmt.Errorf("unexpected argument %q", fs.Arg(c.maxArgs))
		}
		if err != nil && c.argsNote != "" {
			err = fmt.Errorf("%w: %s", err, c.argsNote)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "redhaven %s: %v\n\n", c.name, err)
		c.help(stderr, fs, false)
		return exitUsage
	}
	return run(fs.Args(), stdout, stderr)
}

func (c *command) synopsis(fs *pflag.FlagSet) string {
	s := "redhaven " + c.name
	if fs.HasFlags() {
		s += " [flags]"
	}
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

// help writes c's help; short (for usage errors) leaves out the
// description and examples.
func (c *command) help(w io.Writer, fs *pflag.FlagSet, full bool) {
	fmt.Fprintf(w, "Usage: %s\n\n", c.synopsis(fs))
	desc := c.desc
	if desc == "" {
		desc = strings.ToUpper(c.summary[:1]) + c.summary[1:] + "."
	}
	if full {
		for _, p := range strings.Split(desc, "\n\n") {
			fmt.Fprintf(w, "%s\n\n", wrap(p, 76, ""))
		}
	}
	if fs.HasFlags() {
		fmt.Fprintf(w, "Flags:\n%s\n", fs.FlagUsagesWrapped(100))
	}
	if full && len(c.examples) > 0 {
		fmt.Fprintf(w, "Examples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
		fmt.Fprintln(w)
	}
	if full {
		fmt.Fprintf(w, "Exit status: %s\n", strings.ReplaceAll(exitStatusHelp, "\n", " "))
	} else {
		fmt.Fprintf(w, "Run \"redhaven %s --help\" for more.\n", c.name)
	}
}

// wrap breaks text into lines of at most width characters.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		if i > 0 && n+1+len(word) > width {
			b.WriteString("\n" + indent)
			n = len(indent)
		} else if i > 0 {
			b.WriteString(" ")
			n++
		} else {
			b.WriteString(indent)
			n = len(indent)
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// usage writes the list of commands.
func usage(w io.Writer) {
	fmt.Fprintf(w, "redhaven %s: high availability for Redis + Sentinel in one binary.\n\nUsage: redhaven <command> [flags] [arguments]\n\nCommands:\n", version)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run "redhaven <command> --help" for a command's flags and examples,
"man redhaven" for all of them.
Exit status: %s
`, exitStatusHelp)
}
