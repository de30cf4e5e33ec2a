//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// systemdDockerArgs is what systemd as PID 1 needs from Docker (found on
// Docker 20.10 with cgroup v1): its own /run and /run/lock, the cgroup tree
// writable (it makes a cgroup per unit; the devices controller for
// DevicePolicy=closed), CAP_SYS_ADMIN for the mount namespaces of the
// unit's sandbox (ProtectSystem, PrivateTmp, PrivateDevices, ...), no
// Docker seccomp profile under systemd's own filters, and NET_ADMIN and
// NET_RAW for the agent's ambient capabilities to be in the bounding set.
// SYS_PTRACE only lets the test (docker exec as root) look into the
// agent's mount namespace (checkSandbox).
// Not --privileged: it asks for every capability, and runc fails with
// "unable to apply caps" where the daemon lacks one (CAP_SYS_RESOURCE here).
var systemdDockerArgs = []string{
	"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--cap-add", "SYS_PTRACE",
	"--security-opt", "seccomp=unconfined",
	"--tmpfs", "/run", "--tmpfs", "/run/lock",
	"-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host",
}

// sdUnit is one systemd node container and the client that watches it.
type sdUnit struct {
	t            *testing.T
	env          *Env
	node, client string
	nodeIP       string
	vip, vipCIDR string // the VIP without and with its prefix length
	key          string // cluster.encrypt
}

// TestSystemdUnitVIP runs the agent as the .deb ships it: started by
// systemd (PID 1 of the container) with packaging/redhaven.service and all
// its hardening, as user redhaven, on a one-node cluster (redis-server and
// redis-sentinel in the same container) with the VIP on eth0 of a Docker
// network of the test's own. It checks what the hardening could break:
//
//   - the unit gets active (Type=notify: READY=1 reached systemd);
//   - the VIP is on eth0 (netlink, CAP_NET_ADMIN);
//   - a gratuitous ARP for it reached another container (AF_PACKET,
//     CAP_NET_RAW): that container (arp_accept=1) learns the VIP's MAC
//     before it ever sends to the VIP;
//   - a client on the network reaches Redis through VIP:6380, the web
//     listener binds port 80 (CAP_NET_BIND_SERVICE), Raft writes its store
//     in /var/lib/redhaven, `redhaven status` answers on the admin socket;
//   - systemd really applied the sandbox (seccomp filter, no_new_privs,
//     the three capabilities only, read-only /usr in a mount namespace);
//   - `systemctl reload` (SIGHUP) applies a live change in place;
//   - `systemctl stop`: the agent stops on SIGTERM, releases the VIP
//     itself and exits 0 (unit inactive, result success);
//   - after a second start, a reload with a change that needs a restart
//     hands over to a new process that systemd follows as the main PID
//     (still sandboxed), and everything above still works;
//   - an upgrade, dpkg -i of a .deb with another version, reloads the unit
//     from the postinst (systemctl try-reload-or-restart): the agent hands
//     over to the new binary, systemd follows the new main PID, the unit
//     stays active, the agent reports the new version, and a client
//     connected through the VIP across it loses no connection and gets no
//     error (writer hold); a stop then removes the VIP;
//   - the unit's journal has no permission or seccomp denial.
//
// Then it shows that these checks can fail: a drop-in that takes
// AF_NETLINK and AF_PACKET from RestrictAddressFamilies must leave eth0
// without the VIP, with "address family not supported" in the journal.
func TestSystemdUnitVIP(t *testing.T) {
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	deb, _ := testDeb(t, ctx)
	image, err := SystemdImage(ctx, deb)
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnvSubnet(t)
	u := &sdUnit{t: t, env: env, node: "sd1", client: "sdclient", nodeIP: env.IP(11), vip: env.IP(250)}
	u.vipCIDR = u.vip + "/" + strconv.Itoa(env.Subnet.Bits())
	t.Logf("network %s %s; node %s; VIP %s; image %s", env.Network, env.Subnet, u.nodeIP, u.vipCIDR, image)

	env.Boot(u.node, image, append([]string{"--ip", u.nodeIP}, systemdDockerArgs...))
	// arp_accept=1: a gratuitous ARP makes a neighbour entry here even for
	// an address this container never asked for.
	env.Start(u.client, image, []string{"--ip", env.IP(50),
		"--sysctl", "net.ipv4.conf.all.arp_accept=1", "--sysctl", "net.ipv4.conf.default.arp_accept=1"})
	t.Cleanup(func() {
		if t.Failed() {
			u.dumpJournal()
		}
	})
	u.waitBooted(ctx)
	u.setup(ctx)

	// ---- the unit as shipped ----
	u.systemctl(ctx, "start", "redhaven.service")
	if st := u.show(ctx, "ActiveState", "SubState", "Type", "NotifyAccess", "User"); st != "active running notify all redhaven" {
		t.Fatalf("after systemctl start: ActiveState SubState Type NotifyAccess User = %q, want active running notify all redhaven", st)
	}
	pid1 := u.mainPID(ctx)
	if user, _ := u.exec(ctx, "ps", "-o", "user=", "-p", strconv.Itoa(pid1)); user != "redhaven" {
		t.Errorf("main PID %d runs as %q, want redhaven", pid1, user)
	}
	u.checkSandbox(ctx, pid1)
	u.waitVIP(ctx, true, 30*time.Second)
	u.checkARP(ctx)
	u.checkServing(ctx, "after start")

	// reload with nothing to restart for: in place, same main PID
	u.writeAgentConfig(ctx, "info")
	u.systemctl(ctx, "reload", "redhaven.service")
	u.waitJournal(ctx, 20*time.Second, "reload: applied live")
	if pid := u.mainPID(ctx); pid != pid1 {
		t.Errorf("a live reload changed the main PID: %d -> %d", pid1, pid)
	}
	u.checkServing(ctx, "after a live reload")

	// stop: the agent stops on SIGTERM, releasing the VIP itself
	u.stop(ctx, true)

	// again, then a reload with a key that needs a restart: a hand-over to
	// a new process, which systemd must take as the main PID
	u.systemctl(ctx, "start", "redhaven.service")
	pid1 = u.mainPID(ctx)
	u.checkServing(ctx, "after a second start")
	handedOver := u.cursor(ctx)
	u.writeAgentConfig(ctx, "info", "  refresh: 11s")
	u.systemctl(ctx, "reload", "redhaven.service")
	u.waitJournal(ctx, 60*time.Second, "hand-over done; this process exits")
	var pid2 int
	u.poll(ctx, 30*time.Second, "systemd follows the new main PID", func() bool {
		pid2 = u.mainPID(ctx)
		return pid2 != 0 && pid2 != pid1 && u.show(ctx, "ActiveState", "SubState") == "active running"
	})
	t.Logf("hand-over: main PID %d -> %d", pid1, pid2)
	u.checkSandbox(ctx, pid2)
	u.waitVIP(ctx, true, 30*time.Second)
	u.checkServing(ctx, "after a hand-over reload")

	// upgrade: dpkg -i of a .deb with another version; its postinst
	// reloads the running unit, whose agent hands over to the new binary
	pid3 := u.upgrade(ctx, pid2)

	// systemd 252 takes a MAINPID= that is not its child as "alien" and,
	// on the legacy cgroup hierarchy inside a container, cannot wait for
	// it: stop sends SIGTERM and, nothing to wait for, SIGKILL at once
	// (unit_kill_context). Not so on cgroup v2 or on a host; the VIP then
	// goes with its lifetime (vip.lifetime).
	alien := strings.Contains(u.journal(ctx, handedOver), fmt.Sprintf("Supervising process %d which is not our child", pid3))
	fs, _ := u.exec(ctx, "stat", "-fc", "%T", "/sys/fs/cgroup")
	legacyContainer := alien && fs != "cgroup2fs"
	if legacyContainer {
		t.Logf("systemd took the new main PID %d as not its child and the cgroup hierarchy is legacy (%s) in a container: it cannot wait for the agent's SIGTERM handling, so this stop is not checked for a clean exit", pid3, fs)
	}
	u.stop(ctx, !legacyContainer)

	journal := u.journal(ctx, "")
	if bad := denials(journal); len(bad) > 0 {
		t.Errorf("the journal of redhaven.service has %d denial lines:\n%s", len(bad), strings.Join(bad, "\n"))
	} else {
		t.Logf("journal of redhaven.service: %d lines, no denial", strings.Count(journal, "\n")+1)
	}
	if t.Failed() {
		return
	}

	// ---- the same unit without AF_NETLINK and AF_PACKET: must fail ----
	t.Log("drop-in: RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX")
	cursor := u.cursor(ctx)
	dropIn := "[Service]\n# reset the list, then allow only these\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n"
	if _, err := u.exec(ctx, "mkdir", "-p", "/etc/systemd/system/redhaven.service.d"); err != nil {
		t.Fatal(err)
	}
	if err := env.WriteFile(ctx, u.node, "/etc/systemd/system/redhaven.service.d/e2e-no-netlink.conf", []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	u.systemctl(ctx, "daemon-reload")
	if af := u.show(ctx, "RestrictAddressFamilies"); strings.Contains(af, "AF_NETLINK") || strings.Contains(af, "AF_PACKET") {
		t.Fatalf("drop-in not applied: RestrictAddressFamilies=%s", af)
	}
	out, err := u.exec(ctx, "timeout", "120", "systemctl", "start", "redhaven.service")
	t.Logf("systemctl start with the drop-in: err=%v %s; state %q", err, out, u.show(ctx, "ActiveState", "SubState"))
	// The VIP must not come within a bound the working unit met many times over.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline) && i < 200; i++ {
		if u.vipHeld(ctx) {
			t.Fatalf("the VIP is on eth0 without AF_NETLINK and AF_PACKET: the test cannot tell a broken unit from a working one")
		}
		time.Sleep(500 * time.Millisecond) // sampling for the whole window, not waiting for a condition
	}
	broken := u.journal(ctx, cursor)
	if !strings.Contains(strings.ToLower(broken), "address family not supported") {
		t.Errorf("no 'address family not supported' in the journal of the broken unit:\n%s", tail(broken, 40))
	}
	t.Logf("broken unit, state %q; journal lines naming the fault:\n%s", u.show(ctx, "ActiveState", "SubState"),
		strings.Join(grepLines(broken, "address family not supported", 5), "\n"))
	if bad := denials(broken); len(bad) == 0 {
		t.Errorf("denials() finds nothing in the broken unit's journal: the denial check could never fail")
	}
	if out, err := u.exec(ctx, "timeout", "60", "systemctl", "stop", "redhaven.service"); err != nil {
		t.Errorf("systemctl stop of the broken unit: %v %s", err, out)
	}
}

// upgrade installs a .deb that upgrades the installed one while a client
// holds two connections through the VIP and checks what the package's
// upgrade path promises (TestSystemdUnitVIP); it returns the new main PID.
func (u *sdUnit) upgrade(ctx context.Context, pid int) int {
	u.t.Helper()
	installed, err := u.exec(ctx, "dpkg-query", "-W", "-f", "${Version}", "redhaven")
	if err != nil {
		u.t.Fatal(err)
	}
	deb, version := upgradeDeb(u.t, ctx, installed)
	if err := u.env.CopyTo(ctx, u.node, deb, "/tmp/redhaven-upgrade.deb"); err != nil {
		u.t.Fatal(err)
	}
	if err := u.env.CopyTo(ctx, u.client, buildWriter(u.t, ctx), "/usr/local/bin/writer"); err != nil {
		u.t.Fatal(err)
	}
	const hold = "/tmp/sdhold.txt"
	if err := u.env.ExecDetached(ctx, u.client, "sh", "-c", fmt.Sprintf(
		"echo $$ > %[1]s.pid; exec writer hold -addr %[2]s:6380 -conns 2 -out %[1]s -max 5m 2>%[1]s.err", hold, u.vip)); err != nil {
		u.t.Fatalf("start the hold client: %v", err)
	}
	progress := func() []int {
		out, _ := u.env.Exec(ctx, u.client, "cat", hold+".progress")
		var rs []int
		for _, f := range strings.Fields(out) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil
			}
			rs = append(rs, n)
		}
		return rs
	}
	// every connection answers n more times than in base
	answered := func(base []int, n int) func() bool {
		return func() bool {
			rs := progress()
			if len(rs) != 2 {
				return false
			}
			for i, r := range rs {
				if i < len(base) && r < base[i]+n || i >= len(base) && r < n {
					return false
				}
			}
			return true
		}
	}
	u.poll(ctx, 30*time.Second, "the hold client's connections answer", answered(nil, 10))

	before := u.cursor(ctx)
	began := time.Now()
	out, err := u.exec(ctx, "dpkg", "-i", "/tmp/redhaven-upgrade.deb")
	if err != nil {
		u.t.Fatalf("dpkg -i: %v", err)
	}
	u.t.Logf("dpkg -i %s -> %s in %v: %s", installed, version, time.Since(began).Round(time.Millisecond), strings.ReplaceAll(out, "\n", " | "))
	var pid2 int
	u.poll(ctx, 60*time.Second, "systemd follows the upgraded agent's main PID", func() bool {
		pid2 = u.mainPID(ctx)
		return pid2 != 0 && pid2 != pid && u.show(ctx, "ActiveState", "SubState") == "active running"
	})
	j := u.journal(ctx, before)
	for _, want := range []string{"Reloading redhaven", "binary /usr/bin/redhaven", "hand-over done; this process exits"} {
		if !strings.Contains(j, want) {
			u.t.Errorf("no %q in the journal of the upgrade (the postinst's reload):\n%s", want, tail(j, 30))
		}
	}
	u.t.Logf("upgrade: main PID %d -> %d after %v", pid, pid2, time.Since(began).Round(time.Millisecond))
	if bin, _ := u.exec(ctx, "redhaven", "version"); !strings.HasPrefix(bin, "redhaven "+version+"\n") {
		u.t.Errorf("redhaven version = %q, want redhaven %s", bin, version)
	}
	u.poll(ctx, 30*time.Second, "the agent reports version "+version, func() bool {
		st, _ := u.exec(ctx, "redhaven", "status")
		return statusVersion(st) == version
	})
	u.checkSandbox(ctx, pid2)
	u.waitVIP(ctx, true, 30*time.Second)
	u.checkServing(ctx, "after an upgrade")

	u.poll(ctx, 30*time.Second, "the hold client's connections answer after the upgrade", answered(progress(), 10))
	if out, err := u.env.Exec(ctx, u.client, "sh", "-c", "kill -TERM $(cat "+hold+".pid)"); err != nil {
		u.t.Errorf("stop the hold client: %v %s", err, out)
	}
	var res string
	u.poll(ctx, 30*time.Second, "the hold client's result", func() bool {
		res, err = u.env.Exec(ctx, u.client, "cat", hold)
		return err == nil
	})
	r, err := parseHold(res)
	if err != nil {
		u.t.Fatal(err)
	}
	u.t.Logf("client through the VIP across the upgrade: dropped=%d errors=%d timeouts=%d replies=%d max_pause_ms=%d",
		r.drops, r.errors, r.timeouts, r.replies, r.maxPauseMs)
	if r.drops+r.errors+r.timeouts > 0 {
		u.t.Errorf("the upgrade cost the client: dropped=%d errors=%d timeouts=%d; events:\n%s", r.drops, r.errors, r.timeouts, r.events)
	}
	return pid2
}

// stop runs systemctl stop and checks the VIP is gone; clean: also that
// the agent stopped on SIGTERM by itself (not killed) and released the VIP.
func (u *sdUnit) stop(ctx context.Context, clean bool) {
	u.t.Helper()
	before := u.cursor(ctx)
	u.t.Logf("before stop: ActiveState SubState MainPID = %s", u.show(ctx, "ActiveState", "SubState", "MainPID"))
	u.systemctl(ctx, "stop", "redhaven.service")
	u.waitVIP(ctx, false, 10*time.Second)
	st := u.show(ctx, "ActiveState", "Result")
	if !clean {
		u.t.Logf("after systemctl stop: ActiveState Result = %s; VIP gone", st)
		return
	}
	if st != "inactive success" {
		u.t.Errorf("after systemctl stop: ActiveState Result = %q, want inactive success", st)
	}
	j := u.journal(ctx, before)
	for _, want := range []string{`msg=stopping signal=terminated`, `msg="vip released (shutdown)"`} {
		if !strings.Contains(j, want) {
			u.t.Errorf("no %s in the journal of the stop:\n%s", want, tail(j, 30))
		}
	}
	u.t.Logf("after systemctl stop: %s; the agent stopped on SIGTERM and released the VIP", st)
}

// waitBooted waits until systemd has finished booting the node container.
func (u *sdUnit) waitBooted(ctx context.Context) {
	u.t.Helper()
	var state string
	u.poll(ctx, 120*time.Second, "systemd boots in "+u.node, func() bool {
		state, _ = u.exec(ctx, "systemctl", "is-system-running")
		return state == "running" || state == "degraded"
	})
	if pid1, _ := u.exec(ctx, "cat", "/proc/1/comm"); pid1 != "systemd" {
		u.t.Fatalf("PID 1 of %s is %q, want systemd", u.node, pid1)
	}
	if state == "degraded" {
		failed, _ := u.exec(ctx, "systemctl", "--failed", "--no-legend", "--plain")
		u.t.Logf("systemd in %s is degraded (units that fail in a container, not ours): %s", u.node, failed)
	}
	ver, _ := u.exec(ctx, "systemctl", "--version")
	u.t.Logf("systemd booted in %s: %s, %s", u.node, state, strings.SplitN(ver, "\n", 2)[0])
}

// setup starts redis-server and redis-sentinel (one node: Sentinel
// monitors the Redis of this container) and writes the agent's config.
func (u *sdUnit) setup(ctx context.Context) {
	u.t.Helper()
	redisConf := strings.Join([]string{
		"bind 0.0.0.0", "port 6379", "protected-mode no", "daemonize yes",
		"pidfile /run/e2e-redis.pid", "logfile /var/log/e2e-redis.log", "dir /tmp",
		`save ""`, "appendonly no",
	}, "\n") + "\n"
	sentinelConf := strings.Join([]string{
		"port 26379", "bind 0.0.0.0", "protected-mode no", "daemonize yes",
		"pidfile /run/e2e-sentinel.pid", "logfile /var/log/e2e-sentinel.log", "dir /tmp",
		fmt.Sprintf("sentinel monitor %s %s 6379 1", masterName, u.nodeIP),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", masterName),
	}, "\n") + "\n"
	if _, err := u.exec(ctx, "mkdir", "-p", "/etc/e2e"); err != nil {
		u.t.Fatal(err)
	}
	for path, data := range map[string]string{"/etc/e2e/redis.conf": redisConf, "/etc/e2e/sentinel.conf": sentinelConf} {
		if err := u.env.WriteFile(ctx, u.node, path, []byte(data), 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
	for _, cmd := range [][]string{{"redis-server", "/etc/e2e/redis.conf"}, {"redis-sentinel", "/etc/e2e/sentinel.conf"}} {
		if out, err := u.exec(ctx, cmd...); err != nil {
			u.t.Fatalf("%s: %v %s", cmd[0], err, out)
		}
	}
	u.poll(ctx, 30*time.Second, "Sentinel names the master", func() bool {
		out, _ := u.exec(ctx, "redis-cli", "-p", "26379", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)
		f := strings.Fields(out)
		return len(f) == 2 && f[0] == u.nodeIP
	})
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		u.t.Fatal(err)
	}
	u.key = base64.StdEncoding.EncodeToString(key)
	u.writeAgentConfig(ctx, "debug")
	if out, err := u.exec(ctx, "redhaven", "check-config", "-c", "/etc/redhaven/redhaven.yaml"); err != nil {
		u.t.Fatalf("redhaven check-config: %v\n%s", err, out)
	}
}

// writeAgentConfig writes /etc/redhaven/redhaven.yaml (root:redhaven 0640,
// as the package ships it) with log.level level; httpExtra are more lines
// of the http section.
func (u *sdUnit) writeAgentConfig(ctx context.Context, level string, httpExtra ...string) {
	u.t.Helper()
	conf := fmt.Sprintf(`# written by TestSystemdUnitVIP
node_name: %s
data_dir: /var/lib/redhaven
redis:
  master_name: %s
  sentinels: ["127.0.0.1:26379"]
  check_interval: 100ms
proxy:
  listen: ":6380"
cluster:
  bind: ":7946"
  advertise: %q
  raft_bind: ":7947"
  bootstrap_expect: 1
  encrypt: %q
vip:
  mode: netlink
  address: %q
  interface: eth0
http:
  listen: ":80"
%slog:
  level: %s
`, u.node, masterName, u.nodeIP, u.key, u.vipCIDR, lines(httpExtra), level)
	const path = "/etc/redhaven/redhaven.yaml"
	if err := u.env.WriteFile(ctx, u.node, path, []byte(conf), 0o640); err != nil {
		u.t.Fatal(err)
	}
	if out, err := u.exec(ctx, "chown", "root:redhaven", path); err != nil {
		u.t.Fatalf("chown %s: %v %s", path, err, out)
	}
}

func lines(ls []string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

// checkServing checks what a working agent does under the unit: routing,
// the VIP held and reported, clients served through it, the web listener
// on port 80, the Raft store in the state directory.
func (u *sdUnit) checkServing(ctx context.Context, when string) {
	u.t.Helper()
	var st agentStatus
	var out string
	u.poll(ctx, 30*time.Second, "redhaven status (admin socket) routes and holds the VIP "+when, func() bool {
		out, _ = u.exec(ctx, "redhaven", "status")
		st = parseStatus(out)
		return st.ready && st.master == u.nodeIP+":6379" && st.vipHolder == u.node
	})
	if !u.vipHeld(ctx) {
		u.t.Errorf("%s: the VIP %s is not on eth0", when, u.vipCIDR)
	}
	val := fmt.Sprintf("%s-%d", strings.ReplaceAll(when, " ", "-"), time.Now().UnixNano())
	u.poll(ctx, 30*time.Second, "SET and GET through VIP:6380 from "+u.client+" "+when, func() bool {
		set, err := u.env.Exec(ctx, u.client, "timeout", "5", "redis-cli", "-h", u.vip, "-p", "6380", "SET", "e2e:systemd", val)
		if err != nil || set != "OK" {
			return false
		}
		get, err := u.env.Exec(ctx, u.client, "timeout", "5", "redis-cli", "-h", u.vip, "-p", "6380", "GET", "e2e:systemd")
		return err == nil && get == val
	})
	if got, _ := u.exec(ctx, "redis-cli", "-p", "6379", "GET", "e2e:systemd"); got != val {
		u.t.Errorf("%s: Redis holds e2e:systemd = %q, want %q (written through the VIP)", when, got, val)
	}
	if ls, _ := u.exec(ctx, "ss", "-Htln", "sport = :80"); !strings.Contains(ls, "LISTEN") {
		u.t.Errorf("%s: nothing listens on port 80 (CAP_NET_BIND_SERVICE): %q", when, ls)
	}
	files, _ := u.exec(ctx, "find", "/var/lib/redhaven", "-type", "f", "-user", "redhaven", "-newer", "/etc/e2e/redis.conf")
	if files == "" {
		u.t.Errorf("%s: no file written by user redhaven in /var/lib/redhaven", when)
	}
	u.t.Logf("%s: status %+v; /var/lib/redhaven: %s", when, st, strings.ReplaceAll(files, "\n", " "))
}

// checkSandbox checks that systemd really applied the unit's sandbox to
// the agent (a container could make it skip some of it): a seccomp filter,
// no_new_privs, only the three capabilities, a mount namespace of its own.
func (u *sdUnit) checkSandbox(ctx context.Context, pid int) {
	u.t.Helper()
	status, err := u.exec(ctx, "cat", fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		u.t.Fatal(err)
	}
	// CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13)
	const caps = "0000000000003400"
	for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1", "CapBnd:\t" + caps, "CapAmb:\t" + caps, "CapEff:\t" + caps} {
		if !strings.Contains(status, want+"\n") {
			u.t.Errorf("agent (PID %d) not sandboxed as the unit says: no %q in /proc/PID/status:\n%s", pid, want, status)
		}
	}
	mine, _ := u.exec(ctx, "readlink", fmt.Sprintf("/proc/%d/ns/mnt", pid))
	init, _ := u.exec(ctx, "readlink", "/proc/1/ns/mnt")
	if mine == "" || mine == init {
		u.t.Errorf("agent mount namespace %q, systemd's %q: want one of its own (ProtectSystem, PrivateTmp, ...)", mine, init)
	}
	if ro, _ := u.exec(ctx, "nsenter", "-t", strconv.Itoa(pid), "-m", "touch", "/usr/e2e-probe"); !strings.Contains(ro, "Read-only file system") {
		u.t.Errorf("/usr is writable in the agent's mount namespace (ProtectSystem=strict): %q", ro)
	}
	score, _ := u.exec(ctx, "sh", "-c", "systemd-analyze security redhaven.service --no-pager | tail -n 1")
	u.t.Logf("sandbox of PID %d: %s", pid, score)
}

// checkARP: the client container, which has not sent anything to the
// VIP yet, knows the VIP's MAC (the node's eth0) from a gratuitous ARP.
func (u *sdUnit) checkARP(ctx context.Context) {
	u.t.Helper()
	mac, err := u.exec(ctx, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		u.t.Fatal(err)
	}
	var neigh string
	u.poll(ctx, 15*time.Second, u.client+" learns the VIP's MAC "+mac+" from a gratuitous ARP", func() bool {
		neigh, _ = u.env.Exec(ctx, u.client, "ip", "neigh", "show", u.vip, "dev", "eth0")
		return strings.Contains(neigh, "lladdr "+mac)
	})
	u.t.Logf("gratuitous ARP seen by %s: %s", u.client, neigh)
}

// vipHeld reports whether eth0 of the node carries the VIP.
func (u *sdUnit) vipHeld(ctx context.Context) bool {
	out, err := u.exec(ctx, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	return err == nil && strings.Contains(out, " "+u.vipCIDR+" ")
}

func (u *sdUnit) waitVIP(ctx context.Context, held bool, d time.Duration) {
	u.t.Helper()
	u.poll(ctx, d, fmt.Sprintf("VIP %s on eth0 = %v", u.vipCIDR, held), func() bool { return u.vipHeld(ctx) == held })
}

// systemctl runs systemctl in the node and fails the test if it fails
// (start and reload of a Type=notify unit return once systemd saw READY=1).
func (u *sdUnit) systemctl(ctx context.Context, args ...string) {
	u.t.Helper()
	start := time.Now()
	out, err := u.exec(ctx, append([]string{"timeout", "120", "systemctl"}, args...)...)
	if err != nil {
		st, _ := u.exec(ctx, "systemctl", "status", "--no-pager", "-l", "redhaven.service")
		u.t.Fatalf("systemctl %s: %v %s\n%s", strings.Join(args, " "), err, out, st)
	}
	u.t.Logf("systemctl %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
}

// show returns unit properties, space-separated, in the order asked.
func (u *sdUnit) show(ctx context.Context, props ...string) string {
	vals := make([]string, len(props))
	for i, p := range props {
		vals[i], _ = u.exec(ctx, "systemctl", "show", "-p", p, "--value", "redhaven.service")
	}
	return strings.Join(vals, " ")
}

func (u *sdUnit) mainPID(ctx context.Context) int {
	pid, _ := strconv.Atoi(u.show(ctx, "MainPID"))
	return pid
}

// cursor is the journal's position now, for journal(ctx, cursor).
func (u *sdUnit) cursor(ctx context.Context) string {
	out, _ := u.exec(ctx, "journalctl", "-u", "redhaven.service", "-n", "0", "--show-cursor", "--no-pager")
	_, c, _ := strings.Cut(out, "-- cursor: ")
	return strings.TrimSpace(c)
}

// journal returns the unit's journal (after cursor, if not "").
func (u *sdUnit) journal(ctx context.Context, cursor string) string {
	args := []string{"journalctl", "-u", "redhaven.service", "--no-pager", "-o", "short-precise"}
	if cursor != "" {
		args = append(args, "--after-cursor", cursor)
	}
	out, _ := u.exec(ctx, args...)
	return out
}

func (u *sdUnit) waitJournal(ctx context.Context, d time.Duration, want string) {
	u.t.Helper()
	u.poll(ctx, d, "journal of redhaven.service says "+strconv.Quote(want), func() bool {
		return strings.Contains(u.journal(ctx, ""), want)
	})
}

// dumpJournal logs the end of the unit's journal and its status.
func (u *sdUnit) dumpJournal() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, _ := u.exec(ctx, "systemctl", "status", "--no-pager", "-l", "redhaven.service")
	u.t.Logf("systemctl status redhaven:\n%s\njournal (end):\n%s", st, tail(u.journal(ctx, ""), 60))
	if art := os.Getenv("REDHAVEN_ARTIFACTS"); art != "" {
		_ = os.WriteFile(filepath.Join(art, "systemd-redhaven.journal"), []byte(u.journal(ctx, "")), 0o644)
	}
}

// exec runs a command in the node container, bounded by 2 minutes.
func (u *sdUnit) exec(ctx context.Context, cmd ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return u.env.Exec(ctx, u.node, cmd...)
}

// poll calls cond every 200 ms until it holds, failing the test after d.
func (u *sdUnit) poll(ctx context.Context, d time.Duration, what string, cond func() bool) {
	u.t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; i < 100000; i++ {
		if cond() {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			u.t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(200 * time.Millisecond) // polling with a deadline
	}
}

// denialMarks are what a sandbox denial looks like in a log line: the
// errno texts of EPERM, EACCES and EAFNOSUPPORT (SystemCallErrorNumber=EPERM,
// RestrictAddressFamilies) and a seccomp kill.
var denialMarks = []string{"operation not permitted", "permission denied", "address family not supported",
	"bad system call", "seccomp", "sigsys", "eperm", "eacces"}

// denials returns the journal lines that show a denial.
func denials(journal string) []string {
	var bad []string
	for _, l := range strings.Split(journal, "\n") {
		low := strings.ToLower(l)
		for _, m := range denialMarks {
			if strings.Contains(low, m) {
				bad = append(bad, l)
				break
			}
		}
	}
	return bad
}

// grepLines returns up to n lines of s that contain sub (any case).
func grepLines(s, sub string, n int) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if len(out) < n && strings.Contains(strings.ToLower(l), sub) {
			out = append(out, l)
		}
	}
	return out
}
