package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write packaging/man/redhaven.1 and packaging/completion/redhaven.bash from the commands table")

// TestManPage: the shipped man page and bash completion are the ones the
// commands table makes. Run with -update after changing the table.
func TestManPage(t *testing.T) {
	for _, f := range []struct {
		path string
		text string
	}{
		{"../../packaging/man/redhaven.1", manPage()},
		{"../../packaging/completion/redhaven.bash", bashCompletion()},
	} {
		if *update {
			if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.path, []byte(f.text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(f.path)
		if err != nil || string(got) != f.text {
			t.Errorf("%s is stale (or missing: %v); regenerate it with\n  go test ./cmd/redhaven -run TestManPage -update", f.path, err)
		}
	}
	page := manPage()
	for _, c := range commands {
		if !strings.Contains(page, ".SS "+roff(c.name)) {
			t.Errorf("man page lacks command %q", c.name)
		}
	}
	// groff, when installed, renders it without warnings.
	if _, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff: %v\n%s", err, out)
		}
	}
	// bash accepts the completion script and completes a command.
	if _, err := exec.LookPath("bash"); err == nil {
		script := bashCompletion() + `
COMP_WORDS=(redhaven mem); COMP_CWORD=1; _redhaven; echo "${COMPREPLY[*]}"
COMP_WORDS=(redhaven members ""); COMP_CWORD=2; _redhaven; echo "${COMPREPLY[*]}"
COMP_WORDS=(redhaven status --a); COMP_CWORD=2; _redhaven; echo "${COMPREPLY[*]}"
`
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		want := "members\nremove --socket --addr --user --help\n--addr\n"
		if err != nil || string(out) != want {
			t.Errorf("completion: %v\n got %q\nwant %q", err, out, want)
		}
	}
}
