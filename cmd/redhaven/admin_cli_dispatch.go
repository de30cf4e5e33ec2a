package main

import (
	"fmt"
	"io"
)

// Dispatch of `route` and `keys` for main.go's map of commands. With a
// table of commands (name, flags, --help), this file goes and the table
// gets one entry per sub-command instead, e.g.:
//
//	{name: "route reset", summary: "clear the committed route so that routing follows Sentinel again",
//	 setup: apiCommand(runRouteReset)},
//	{name: "keys list", summary: "show every member's cluster keys (fingerprints)", setup: apiCommand(runKeysOp("list"))},
//	{name: "keys install", summary: "install a cluster key on every member (read from stdin)", setup: apiCommand(runKeysOp("install"))},
//	{name: "keys use", summary: "make an installed key primary on every member", setup: apiCommand(runKeysOp("use"))},
//	{name: "keys remove", summary: "remove a cluster key from every member", setup: apiCommand(runKeysOp("remove"))},
//	{name: "backend drain", summary: "no new sessions to a Redis backend", args: "ADDR", minArgs: 1, maxArgs: 1,
//	 setup: apiCommand(runBackendState("drain"))}, (and "backend maintenance", "backend ready")

// withAPIFlags parses the connection flags, then runs f.
func withAPIFlags(name string, f apiRun) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		fs, o := apiFlags(name, stderr)
		if err := fs.Parse(args); err != nil {
			return usageErr(err)
		}
		return f(o, fs.Args(), stdout, stderr)
	}
}

// runRoute dispatches `redhaven route reset`.
func runRoute(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "reset" {
		fmt.Fprintln(stderr, "Usage: redhaven route reset [flags]\n\nClear the committed route so that the leader commits the master Sentinel reports again.")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	return withAPIFlags("route reset", runRouteReset)(args[1:], stdout, stderr)
}

// runKeys dispatches `redhaven keys install|use|remove|list`.
func runKeys(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "list", "install", "use", "remove":
			return withAPIFlags("keys "+args[0], runKeysOp(args[0]))(args[1:], stdout, stderr)
		}
	}
	fmt.Fprint(stderr, `Usage: redhaven keys list|install|use|remove [flags]

Rotate the cluster key (cluster.encrypt) on every member, over the
cluster's own mutual TLS (never through Raft: no key is written to
raft.db). install, use and remove read the key from the terminal
(without echo) or the first line of standard input, never from the
command line. Keys are shown as fingerprints.

  redhaven keygen > new.key
  redhaven keys install < new.key   # every node accepts both keys
  redhaven keys use < new.key       # every node encrypts and signs with it
  redhaven keys remove < old.key    # the old key is refused from now on
  then put the new key in cluster.encrypt of every node's config file
`)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return 0
	}
	return 2
}

// runBackend dispatches `redhaven backend ready|drain|maintenance ADDR`.
func runBackend(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "ready", "drain", "maintenance":
			return withAPIFlags("backend "+args[0], runBackendState(args[0]))(args[1:], stdout, stderr)
		}
	}
	fmt.Fprint(stderr, `Usage: redhaven backend ready|drain|maintenance [flags] ADDR

Set a Redis backend's admin state, as the stats page does: drain takes no
new sessions, maintenance takes no traffic, ready clears both. Committed
through Raft by the leader (any agent forwards it) and shown on every node.
`)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return 0
	}
	return 2
}
