package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write packaging/man/redhaven.1 and packaging/completion/{redhaven.bash,_redhaven} from the commands table")

// TestManPage: the shipped man page and bash completion are the ones the
// commands table makes. Run with -update after changing the table.
func TestManPage(t *testing.T) {
	for _, f := range []struct {
		path string
		text string
	}{
		{"../../packaging/man/redhaven.1", manPage()},
		{"../../packaging/completion/redhaven.bash", bashCompletion()},
		{"../../packaging/completion/_redhaven", zshCompletion()},
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

// TestZshCompletion runs the zsh completion in a real zsh with the
// completion system's functions replaced by ones that print what they were
// given, so the test sees what zsh would offer.
func TestZshCompletion(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		if os.Getenv("REDHAVEN_REQUIRE") != "" { // CI installs zsh with the test packages
			t.Fatal("zsh is not installed (apt-get install zsh; e2e/test-deps.sh lists it)")
		}
		t.Skip("zsh is not installed (apt-get install zsh)")
	}
	script := `
_describe() { shift 3; print -r -- "describe: ${(P)1}" }
_arguments() { print -r -- "arguments: $*" }
_files() { print files }
source /dev/stdin <<<"${$(<` + "`COMPLETION`" + `)/_redhaven \"\$@\"/}"
words=(redhaven me); CURRENT=2; _redhaven
words=(redhaven members ''); CURRENT=3; _redhaven
words=(redhaven status --a); CURRENT=3; _redhaven
words=(redhaven nosuch ''); CURRENT=3; _redhaven; print "rc=$?"
`
	f := filepath.Join(t.TempDir(), "_redhaven")
	if err := os.WriteFile(f, []byte(zshCompletion()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zsh", "-n", f).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	script = strings.ReplaceAll(script, "`COMPLETION`", f)
	out, err := exec.Command("zsh", "-f", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("zsh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got %d:\n%s", len(lines), out)
	}
	for i, want := range []string{
		"describe: agent:run the agent", // every command with its summary
		"describe: remove:",             // members' sub-command
		"--addr[talk HTTP",              // status's flags
		"rc=1",                          // an unknown command completes nothing
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q does not contain %q", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[0], "members:") || !strings.Contains(lines[0], "help:show") {
		t.Errorf("command list lacks members or help: %q", lines[0])
	}
}
