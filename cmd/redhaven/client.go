package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/redhaven/redhaven/node"
)

// The CLI's view of GET /api/v1/stats: only the fields it prints.
type apiStats struct {
	Node    string `json:"node"`
	Version string `json:"redhaven_version"`
	Ready   bool   `json:"ready"`
	Leader  bool   `json:"leader"`
	Route   struct {
		Master string `json:"master"`
		Epoch  int64  `json:"epoch"`
		Reason string `json:"reason"`
	} `json:"route"`
	Members []struct {
		Name        string  `json:"name"`
		Addr        string  `json:"addr"`
		GossipState string  `json:"gossip_state"`
		RaftRole    string  `json:"raft_role"`
		RaftAddr    string  `json:"raft_addr"`
		LastContact float64 `json:"last_contact_seconds"`
		Version     string  `json:"version"`
		IsLeader    bool    `json:"is_leader"`
	} `json:"members"`
	VIP struct {
		Mode    string `json:"mode"`
		Address string `json:"address"`
		Holder  string `json:"holder"`
	} `json:"vip"`
}

// apiClient talks to an agent's HTTP API: by default the local agent over
// its admin socket (where the caller is an admin if the OS let it
// connect), or any agent over TCP with --addr (then admin actions need an
// http.auth admin user).
type apiClient struct {
	base       string // http://... ; "http://redhaven" over the socket
	socket     string // the admin socket, "" over TCP
	user, pass string
	http       *http.Client
}

// apiOpts are the connection flags shared by the sub-commands that talk to
// an agent.
type apiOpts struct {
	socket, addr, user string
}

func apiFlags(name string, stderr io.Writer) (*pflag.FlagSet, *apiOpts) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &apiOpts{}
	fs.StringVar(&o.socket, "socket", defaultSocket(), "the local agent's admin socket (http.admin_socket)")
	fs.StringVar(&o.addr, "addr", "", "talk HTTP to this agent instead of the socket, e.g. http://10.0.0.11:8404 (actions need --user)")
	fs.StringVar(&o.addr, "http", "", "same as --addr")
	_ = fs.MarkHidden("http")
	fs.StringVar(&o.user, "user", os.Getenv("REDHAVEN_HTTP_USER"), "http.auth user with --addr (or REDHAVEN_HTTP_USER); password from REDHAVEN_HTTP_PASSWORD, else asked on the terminal")
	return fs, o
}

// defaultSocket is http.admin_socket as the agent on this host would read
// it (config file, REDHAVEN_HTTP__ADMIN_SOCKET), or the built-in default
// when that cannot be read.
func defaultSocket() string {
	cfg, err := node.LoadConfig("", os.Environ(), nil)
	if err != nil || cfg.HTTP.AdminSocket == "" {
		return node.DefaultConfig().HTTP.AdminSocket
	}
	return cfg.HTTP.AdminSocket
}

func newAPIClient(o *apiOpts) (*apiClient, error) {
	if o.addr == "" {
		path := o.socket
		return &apiClient{base: "http://redhaven", socket: path, http: &http.Client{
			Timeout: 60 * time.Second,
			Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}},
		}}, nil
	}
	base := o.addr
	if !strings.Contains(base, "://") {
		if strings.HasPrefix(base, ":") {
			base = "127.0.0.1" + base
		}
		base = "http://" + base
	}
	c := &apiClient{base: strings.TrimRight(base, "/"), user: o.user, http: &http.Client{Timeout: 60 * time.Second}}
	if o.user != "" {
		c.pass = os.Getenv("REDHAVEN_HTTP_PASSWORD")
		if c.pass == "" {
			pw, err := readPassword(os.Stdin, os.Stderr, "password for "+o.user+": ")
			if err != nil {
				return nil, fmt.Errorf("password for --user %s (or set REDHAVEN_HTTP_PASSWORD): %w", o.user, err)
			}
			c.pass = pw
		}
	}
	return c, nil
}

// where names what the client talks to, for errors.
func (c *apiClient) where() string {
	if c.socket != "" {
		return "the admin socket " + c.socket
	}
	return c.base
}

func (c *apiClient) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		switch {
		case c.socket != "" && errors.Is(err, syscall.EACCES):
			return fmt.Errorf("cannot use %s: permission denied (run as root or as a member of the agent's group, e.g. sudo, or use --addr with --user)", c.where())
		case c.socket != "" && errors.As(err, &op):
			return fmt.Errorf("cannot reach the agent at %s (is it running? see --socket, or --addr for HTTP): %w", c.where(), err)
		case errors.As(err, &op):
			return fmt.Errorf("cannot reach the agent at %s (is it running? see --addr): %w", c.where(), err)
		}
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(b))
		var r struct{ Error string }
		if json.Unmarshal(b, &r) == nil && r.Error != "" {
			msg = r.Error
		}
		return fmt.Errorf("%s %s on %s: %s: %s", method, path, c.where(), resp.Status, msg)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: bad JSON: %w", method, path, err)
		}
	}
	return nil
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs, o := apiFlags("status", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	var s apiStats
	if err := getStats(o, &s); err != nil {
		fmt.Fprintf(stderr, "redhaven status: %v\n", err)
		return 1
	}
	leader := ""
	for _, m := range s.Members {
		if m.IsLeader {
			leader = m.Name
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "node:\t%s (redhaven %s)\n", s.Node, s.Version)
	fmt.Fprintf(w, "leader:\t%s\n", orNone(leader))
	fmt.Fprintf(w, "master:\t%s (epoch %d, %s)\n", orNone(s.Route.Master), s.Route.Epoch, s.Route.Reason)
	fmt.Fprintf(w, "routing:\t%s\n", map[bool]string{true: "yes, this node may route writes", false: "NO: commands are held (no committed master or out of contact with the quorum)"}[s.Ready])
	if s.VIP.Mode != "" && s.VIP.Mode != "none" {
		fmt.Fprintf(w, "vip:\t%s held by %s\n", s.VIP.Address, orNone(s.VIP.Holder))
	}
	w.Flush()
	if !s.Ready {
		return 3
	}
	return 0
}

func runMembers(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "remove" {
		return runMembersRemove(args[1:], stdout, stderr)
	}
	fs, o := apiFlags("members", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	var s apiStats
	if err := getStats(o, &s); err != nil {
		fmt.Fprintf(stderr, "redhaven members: %v\n", err)
		return 1
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tGOSSIP ADDR\tSTATE\tRAFT ROLE\tRAFT ADDR\tLAST CONTACT\tVERSION")
	for _, m := range s.Members {
		contact := "-"
		if m.LastContact > 0 {
			contact = (time.Duration(m.LastContact * float64(time.Second))).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.GossipState, orNone(m.RaftRole), m.RaftAddr, contact, m.Version)
	}
	w.Flush()
	return 0
}

// runMembersRemove: `redhaven members remove NAME` removes a failed server
// from the Raft configuration (run it against the leader's agent).
func runMembersRemove(args []string, stdout, stderr io.Writer) int {
	fs, o := apiFlags("members remove", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "redhaven members remove: give exactly one member name (see `redhaven members`)")
		return 2
	}
	var out actedResult
	c, err := newAPIClient(o)
	if err == nil {
		err = c.do("POST", "/api/v1/members/remove", map[string]string{"node": fs.Arg(0)}, &out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "redhaven members remove: %v\n", err)
		return 1
	}
	printActed(stdout, out)
	return 0
}

func runFailover(args []string, stdout, stderr io.Writer) int {
	fs, o := apiFlags("failover", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	c, err := newAPIClient(o)
	if err != nil {
		fmt.Fprintf(stderr, "redhaven failover: %v\n", err)
		return 1
	}
	var before apiStats
	if err := c.do("GET", "/api/v1/stats", nil, &before); err != nil {
		fmt.Fprintf(stderr, "redhaven failover: %v\n", err)
		return 1
	}
	var acted actedResult
	if err := c.do("POST", "/api/v1/failover", map[string]string{}, &acted); err != nil {
		fmt.Fprintf(stderr, "redhaven failover: %v\n", err)
		return 1
	}
	printActed(stdout, acted)
	fmt.Fprintf(stdout, "master now %s (epoch %d); waiting for the new master...\n", before.Route.Master, before.Route.Epoch)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var s apiStats
		if err := c.do("GET", "/api/v1/stats", nil, &s); err == nil && s.Route.Master != "" && s.Route.Master != before.Route.Master && s.Route.Epoch > before.Route.Epoch {
			fmt.Fprintf(stdout, "new master %s (epoch %d)\n", s.Route.Master, s.Route.Epoch)
			return 0
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintln(stderr, "redhaven failover: no new master after 60s; see the agent's log and the stats page")
	return 1
}

func runJoinLeave(action string) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		fs, o := apiFlags(action, stderr)
		if err := fs.Parse(args); err != nil {
			return usageErr(err)
		}
		body := map[string]any{}
		if action == "join" {
			if fs.NArg() == 0 {
				fmt.Fprintln(stderr, "redhaven join: give at least one gossip address of a running agent (host:port)")
				return 2
			}
			body["addrs"] = fs.Args()
		}
		var out actedResult
		c, err := newAPIClient(o)
		if err == nil {
			err = c.do("POST", "/api/v1/"+action, body, &out)
		}
		if err != nil {
			fmt.Fprintf(stderr, "redhaven %s: %v\n", action, err)
			return 1
		}
		printActed(stdout, out) // join and leave act on the agent asked
		return 0
	}
}

func getStats(o *apiOpts, s *apiStats) error {
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	return c.do("GET", "/api/v1/stats", nil, s)
}

func usageErr(err error) int {
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	return 2
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
