package packaging_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/redhaven/redhaven/packaging"
)

// TestVersionScript runs packaging/version.sh in a scratch git repository
// through its history (no tag, more commits, tag v0.1.0, commits after it,
// tag v0.2.0) and checks with dpkg --compare-versions that every cleaned
// version sorts after the one before: untagged builds are 0.0.0+N.gHASH,
// not 0.0.0~gHASH, whose hashes sort at random.
func TestVersionScript(t *testing.T) {
	needTool(t, "git", "git")
	needTool(t, "dpkg", "dpkg")
	script, err := filepath.Abs("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	commit := func() {
		t.Helper()
		git("commit", "-q", "--allow-empty", "-m", "c")
	}
	version := func() string {
		t.Helper()
		cmd := exec.Command("sh", script)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("version.sh: %v", err)
		}
		v, err := packaging.CleanVersion(string(out))
		if err != nil {
			t.Fatalf("CleanVersion(%q): %v", out, err)
		}
		return v
	}
	git("init", "-q")
	steps := []struct {
		do   func()
		want string // regexp of the cleaned version
	}{
		{commit, `^0\.0\.0\+1\.g[0-9a-f]{7}$`},
		{commit, `^0\.0\.0\+2\.g[0-9a-f]{7}$`},
		{func() { commit(); commit() }, `^0\.0\.0\+4\.g[0-9a-f]{7}$`},
		{func() { git("tag", "v0.1.0") }, `^0\.1\.0$`},
		{commit, `^0\.1\.0\+1\.g[0-9a-f]{7}$`},
		{func() { commit(); commit() }, `^0\.1\.0\+3\.g[0-9a-f]{7}$`},
		{func() { git("tag", "v0.2.0") }, `^0\.2\.0$`},
	}
	prev := ""
	for i, s := range steps {
		s.do()
		v := version()
		if !regexp.MustCompile(s.want).MatchString(v) {
			t.Fatalf("step %d: version %q, want %s", i, v, s.want)
		}
		if prev != "" {
			if err := exec.Command("dpkg", "--compare-versions", prev, "lt", v).Run(); err != nil {
				t.Errorf("dpkg: %s is not older than %s", prev, v)
			}
		}
		prev = v
	}
	// Uncommitted changes say so.
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "f")
	if v := version(); !strings.HasSuffix(v, "dirty") {
		t.Errorf("with uncommitted changes: %q, want a dirty version", v)
	}
}
