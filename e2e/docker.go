// Package e2e runs redhaven end to end in Docker: node containers built
// from the .deb, on a Docker network that each test creates for itself.
// The tests carry the build tag e2e (`make e2e`); this file holds the
// untagged helpers they share: images without any registry (image.sh),
// the .deb built from the working tree, and an Env that removes every
// container and network it created, also when the test fails.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/packaging"
)

// ModuleRoot returns the folder that holds go.mod, searched upward from
// the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Docker runs the docker CLI and returns its trimmed standard output. The
// error names the command and carries docker's standard error.
func Docker(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("docker %s: %w: %s",
			strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// RequireDocker skips the test, or fails it when REDHAVEN_REQUIRE names
// docker, unless a Docker daemon answers.
func RequireDocker(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		testutil.Require(t, "docker", "docker not on PATH")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		testutil.Require(t, "docker", "no Docker daemon: "+err.Error())
	}
}

// imageScript runs e2e/image.sh and returns the tag it prints.
func imageScript(ctx context.Context, args ...string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "e2e", "image.sh")}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("e2e/image.sh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	tag := strings.TrimSpace(stdout.String())
	if tag == "" {
		return "", fmt.Errorf("e2e/image.sh %s printed no tag: %s", strings.Join(args, " "), strings.TrimSpace(stderr.String()))
	}
	return tag, nil
}

// BaseImage returns the tag of the Debian base image (debootstrap of
// bookworm with Redis, Sentinel and network tools), building it when it is
// missing. The first build takes about a minute; later calls are instant.
func BaseImage(ctx context.Context) (string, error) {
	return imageScript(ctx, "base")
}

// SystemdImage returns the tag of the systemd node image: a Debian base
// with systemd as init and deb installed, cached by the .deb's hash.
func SystemdImage(ctx context.Context, deb string) (string, error) {
	return imageScript(ctx, "systemd", deb)
}

// NodeImage returns the tag of the node image: the base image with deb
// installed by dpkg. It is cached by the .deb's hash.
func NodeImage(ctx context.Context, deb string) (string, error) {
	return imageScript(ctx, "node", deb)
}

// BuildDeb builds ./cmd/redhaven as `make package` does (static, trimmed,
// -X main.version=version) and packages it into dir; it returns the .deb.
func BuildDeb(ctx context.Context, dir, version string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "redhaven")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/redhaven")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ./cmd/redhaven: %w\n%s", err, out)
	}
	paths, err := packaging.Build(packaging.Options{
		Config:  filepath.Join(root, "packaging", "nfpm.yaml"),
		Binary:  bin,
		Version: version,
		OutDir:  dir,
		Formats: []string{"deb"},
	})
	if err != nil {
		return "", err
	}
	return paths[0], nil
}

// Env is one test's Docker network and the containers on it. The network
// is internal: its containers reach one another and nothing outside it.
// Close (registered with t.Cleanup) removes them all by name.
type Env struct {
	// Network is the Docker network's name.
	Network string
	// Subnet is the network's subnet when made by NewEnvSubnet.
	Subnet netip.Prefix

	t      testing.TB
	prefix string

	mu         sync.Mutex
	containers []string
	closed     bool
}

// NewEnv creates an internal bridge network named redhaven-e2e-<random>.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Docker(ctx, "network", "create", "--driver", "bridge", "--internal",
		"--label", "redhaven-e2e=1", e.Network); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func newEnv(t testing.TB) *Env {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, prefix: "redhaven-e2e-" + hex.EncodeToString(b)}
	e.Network = e.prefix
	return e
}

// NewEnvSubnet creates an internal bridge network like NewEnv, but with a
// /24 subnet of its own (10.213.X.0/24, X random, not overlapping another
// Docker network or a route of this host), so that containers can be given
// fixed addresses (Start with "--ip", e.IP(n)) that survive a restart or
// a `docker network disconnect` + `connect --ip`. Subnet holds it.
func NewEnvSubnet(t testing.TB) *Env {
	t.Helper()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	routes, _ := exec.CommandContext(ctx, "ip", "-4", "route", "show", "table", "all").Output()
	var lastErr error
	for try := 0; try < 20; try++ {
		b := make([]byte, 1)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, b[0], 0}), 24)
		if routeOverlaps(string(routes), subnet) {
			continue
		}
		_, err := Docker(ctx, "network", "create", "--driver", "bridge", "--internal",
			"--subnet", subnet.String(), "--label", "redhaven-e2e=1", e.Network)
		if err == nil {
			e.Subnet = subnet
			t.Cleanup(e.Close)
			return e
		}
		lastErr = err
		if !strings.Contains(err.Error(), "overlap") {
			break
		}
	}
	t.Fatalf("create network %s with a free 10.213.X.0/24 subnet: %v", e.Network, lastErr)
	return nil
}

// routeOverlaps reports whether a destination in `ip route` output
// overlaps subnet (the default route does not count).
func routeOverlaps(routes string, subnet netip.Prefix) bool {
	for _, line := range strings.Split(routes, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unicast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			a, err2 := netip.ParseAddr(dst)
			if err2 != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Bits() > 0 && p.Overlaps(subnet) {
			return true
		}
	}
	return false
}

// IP returns host number n of the network's subnet (NewEnvSubnet only):
// IP(11) is 10.213.X.11. Docker gives .1 to the bridge and assigns other
// containers from .2 upward, so fixed addresses should be well above that.
func (e *Env) IP(n int) string {
	a := e.Subnet.Addr().As4()
	a[3] = byte(n)
	return netip.AddrFrom4(a).String()
}

// ExecDetached starts cmd in the container in the background (docker exec
// -d) and returns at once.
func (e *Env) ExecDetached(ctx context.Context, name string, cmd ...string) error {
	_, err := Docker(ctx, append([]string{"exec", "-d", e.Name(name)}, cmd...)...)
	return err
}

// CopyTo copies the local file or folder src to dst in the container.
func (e *Env) CopyTo(ctx context.Context, name, src, dst string) error {
	_, err := Docker(ctx, "cp", src, e.Name(name)+":"+dst)
	return err
}

// CopyFrom copies src in the container to the local path dst.
func (e *Env) CopyFrom(ctx context.Context, name, src, dst string) error {
	_, err := Docker(ctx, "cp", e.Name(name)+":"+src, dst)
	return err
}

// WriteFile writes data to path in the container with the given mode.
func (e *Env) WriteFile(ctx context.Context, name, path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp("", "redhaven-e2e-file-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		return err
	}
	if err := e.CopyTo(ctx, name, f.Name(), path); err != nil {
		return fmt.Errorf("write %s in %s: %w", path, name, err)
	}
	return nil
}

// Name is the Docker name of the container that the test calls name.
func (e *Env) Name(name string) string { return e.prefix + "-" + name }

// Start runs a detached container from image on the network; other
// containers reach it as name. dockerArgs go before the image (e.g.
// "--cap-add", "NET_ADMIN"); cmd after it, default `sleep infinity`.
func (e *Env) Start(name, image string, dockerArgs []string, cmd ...string) {
	e.t.Helper()
	if len(cmd) == 0 {
		cmd = []string{"sleep", "infinity"}
	}
	e.run(name, image, append([]string{"--init"}, dockerArgs...), cmd)
}

// Boot runs a detached container from image with the image's own command
// as PID 1 (no --init, no command): for an image whose init is systemd.
func (e *Env) Boot(name, image string, dockerArgs []string) {
	e.t.Helper()
	e.run(name, image, dockerArgs, nil)
}

func (e *Env) run(name, image string, dockerArgs, cmd []string) {
	e.t.Helper()
	full := e.Name(name)
	e.mu.Lock()
	e.containers = append(e.containers, full) // before run: a half-created one is removed too
	e.mu.Unlock()
	args := []string{"run", "-d", "--name", full, "--hostname", name,
		"--network", e.Network, "--network-alias", name, "--label", "redhaven-e2e=1"}
	args = append(args, dockerArgs...)
	args = append(append(args, image), cmd...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := Docker(ctx, args...); err != nil {
		e.t.Fatal(err)
	}
}

// Exec runs cmd in the container and returns its combined output.
func (e *Env) Exec(ctx context.Context, name string, cmd ...string) (string, error) {
	var out bytes.Buffer
	c := exec.CommandContext(ctx, "docker", append([]string{"exec", e.Name(name)}, cmd...)...)
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if err != nil {
		err = fmt.Errorf("exec %s in %s: %w: %s", strings.Join(cmd, " "), name, err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), err
}

// Close removes the containers, then the network. It may be called more
// than once; failures are logged, not fatal.
func (e *Env) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, c := range e.containers {
		if _, err := Docker(ctx, "rm", "-f", "-v", c); err != nil && !strings.Contains(err.Error(), "No such container") {
			e.t.Logf("remove container %s: %v", c, err)
		}
	}
	if _, err := Docker(ctx, "network", "rm", e.Network); err != nil {
		e.t.Logf("remove network %s: %v", e.Network, err)
	}
}
