// Command redhaven runs the redhaven agent and talks to a running one.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/pflag"

	"github.com/redhaven/redhaven/node"
)

// Set at build time by the Makefile: -ldflags "-X main.version=... -X
// main.commit=... -X main.buildDate=...".
var (
	version   = "dev"
	commit    = "unknown"
	buildDate = "unknown"
)

func main() {
	node.Version = version
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 { // help CMD
			if c, rest := findCommand(args[1:]); c != nil && len(rest) == 0 {
				fs, _ := c.newFlagSet()
				c.help(stdout, fs, true)
				return exitOK
			}
			fmt.Fprintf(stderr, "redhaven help: unknown command %q\n\n", strings.Join(args[1:], " "))
			usage(stderr)
			return exitUsage
		}
		usage(stdout)
		return exitOK
	case "--version", "-v":
		args = append([]string{"version"}, args[1:]...)
	}
	c, rest := findCommand(args)
	if c == nil {
		fmt.Fprintf(stderr, "redhaven: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return runCommand(c, rest, stdout, stderr)
}

// configCommand registers the config flags (agent, check-config); run
// gets the parsed flag set.
func configCommand(run func(fs *pflag.FlagSet, stdout, stderr io.Writer) int) func(*pflag.FlagSet) runFunc {
	return func(fs *pflag.FlagSet) runFunc {
		node.Flags(fs)
		return func(_ []string, stdout, stderr io.Writer) int { return run(fs, stdout, stderr) }
	}
}

// loadConfig checks the config the parsed flags name ("" path means the
// default): every problem at once, or the warnings of a valid one.
func loadConfig(fs *pflag.FlagSet) (node.Config, []string, error) {
	path := ""
	if fs.Changed("config") {
		path, _ = fs.GetString("config")
	}
	return node.Check(path, os.Environ(), fs)
}

func runAgent(fs *pflag.FlagSet, stdout, stderr io.Writer) int {
	ho, herr := takeHandoverSocket() // before the config: its variable is not a config key
	cfg, warnings, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintf(stderr, "redhaven agent: invalid configuration:\n  %s\n", indentErr(err))
		return exitUsage
	}
	if herr != nil {
		fmt.Fprintf(stderr, "redhaven agent: %v\n", herr)
		return exitError
	}
	logger, level := node.NewLeveledLogger(cfg.Log, stderr)
	for _, w := range warnings {
		logger.Warn("config setting has no effect", "warning", w)
	}
	setGOMAXPROCS(logger)
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	args := agentArgs(fs)
	p := &agentProc{args: args, cfg: cfg, logger: logger, level: level, exe: exe, exeID: statID(exe), ho: ho,
		loadConfig: func() (node.Config, error) {
			fs := pflag.NewFlagSet("redhaven agent", pflag.ContinueOnError)
			fs.SetOutput(io.Discard)
			node.Flags(fs) // the agent command's flags (configCommand)
			if err := fs.Parse(args); err != nil {
				return node.Config{}, err
			}
			cfg, _, err := loadConfig(fs)
			return cfg, err
		}}
	return p.serve(stderr)
}

// agentArgs are the agent's command-line arguments, for the new process of
// a hand-over: the ones this process was started with ("redhaven agent
// ..."), or, when run() was called another way (tests), the flags that
// were set.
func agentArgs(fs *pflag.FlagSet) []string {
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		return os.Args[2:]
	}
	var args []string
	fs.Visit(func(f *pflag.Flag) { args = append(args, "--"+f.Name+"="+f.Value.String()) })
	return args
}

func runCheckConfig(fs *pflag.FlagSet, stdout, stderr io.Writer) int {
	cfg, warnings, err := loadConfig(fs)
	if err != nil {
		n := len(flattenErrs(err))
		fmt.Fprintf(stderr, "configuration is invalid (%d problem%s):\n  %s\n", n, map[bool]string{true: "s"}[n > 1], indentErr(err))
		return exitError
	}
	fmt.Fprintf(stdout, "configuration is valid; the agent will run:\n%s", cfg.Summary())
	if len(warnings) > 0 {
		fmt.Fprintf(stderr, "warnings (settings that have no effect):\n")
		for _, w := range warnings {
			fmt.Fprintf(stderr, "  %s\n", w)
		}
	}
	return exitOK
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "redhaven %s\ncommit:     %s\nbuilt:      %s\ngo:         %s %s/%s\n",
		version, commit, buildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
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
		return exitError
	}
	fmt.Fprintln(stdout, key)
	return exitOK
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
