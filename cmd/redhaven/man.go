package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// The man page (packaging/man/redhaven.1) and the bash completion
// (packaging/completion/redhaven.bash) are made from the commands table;
// `go test ./cmd/redhaven -run TestManPage -update` writes them, and the
// test fails while they are stale.

// roff escapes text for a man page line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func manPage() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p(`.\" Generated from cmd/redhaven/commands.go by TestManPage -update; do not edit.`)
	p(`.TH REDHAVEN 1 "" "redhaven" "User Commands"`)
	p(".SH NAME")
	p(`redhaven \- high availability for Redis + Sentinel in one binary`)
	p(".SH SYNOPSIS")
	p(`.B redhaven`)
	p(`.I command`)
	p(`[\fIflags\fR] [\fIarguments\fR]`)
	p(".SH DESCRIPTION")
	p("%s", roff("redhaven runs on every node of a Redis + Redis Sentinel deployment and replaces HAProxy + keepalived: "+
		"it follows Sentinel, proxies clients to the current master (and reads to healthy replicas), "+
		"forms a cluster with the other nodes by gossip and Raft, and the Raft leader holds the virtual IP. "+
		"Each node serves a stats page, a JSON/CSV API and Prometheus metrics."))
	p(".SH COMMANDS")
	for i := range commands {
		c := &commands[i]
		fs, _ := c.newFlagSet()
		p(".SS %s", roff(c.name))
		p(".B %s", roff(c.synopsis(fs)))
		p(".PP")
		desc := c.desc
		if desc == "" {
			desc = strings.ToUpper(c.summary[:1]) + c.summary[1:] + "."
		}
		for j, para := range strings.Split(desc, "\n\n") {
			if j > 0 {
				p(".PP")
			}
			p("%s", roff(para))
		}
		fs.VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			name, usage := pflag.UnquoteUsage(f)
			head := `\fB\-\-` + roff(f.Name) + `\fR`
			if f.Shorthand != "" {
				head = `\fB\-` + f.Shorthand + `\fR, ` + head
			}
			if name != "" {
				head += ` \fI` + roff(name) + `\fR`
			}
			p(".TP")
			p("%s", head)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" {
				usage += " (default " + f.DefValue + ")"
			}
			p("%s", roff(usage))
		})
		if len(c.examples) > 0 {
			p(".PP")
			p("Examples:")
			p(".PP")
			p(".RS")
			p(".nf")
			for _, e := range c.examples {
				p("%s", roff(e))
			}
			p(".fi")
			p(".RE")
		}
	}
	p(".SH EXIT STATUS")
	p("%s", roff(strings.ReplaceAll(exitStatusHelp, "\n", " ")))
	p(".SH ENVIRONMENT")
	p(".TP")
	p(`.B REDHAVEN_\fISECTION\fB__\fIKEY\fR`)
	p("%s", roff("overrides a config key after the file and before the flags: REDHAVEN_PROXY__HOLD_TIMEOUT=2s sets proxy.hold_timeout."))
	p(".TP")
	p(".B REDHAVEN_HTTP_USER, REDHAVEN_HTTP_PASSWORD")
	p("%s", roff("the http.auth user and password of the commands that talk to an agent with --addr."))
	p(".SH FILES")
	p(".TP")
	p(".I /etc/redhaven/redhaven.yaml")
	p("%s", roff("the configuration; every key is listed there with its default and a comment."))
	p(".TP")
	p(".I /run/redhaven/admin.sock")
	p("%s", roff("the admin socket of the local agent (http.admin_socket)."))
	p(".TP")
	p(".I /var/lib/redhaven")
	p("%s", roff("Raft log and snapshots (data_dir)."))
	p(".TP")
	p(".I /usr/share/redhaven/")
	p("%s", roff("Grafana dashboard and Prometheus alert rules."))
	p(".SH SEE ALSO")
	p(`.BR redis\-server (1),`)
	p(`.BR redis\-sentinel (1),`)
	p(`.BR systemctl (1)`)
	return b.String()
}

// bashCompletion completes command names, then the command's flags.
func bashCompletion() string {
	var b strings.Builder
	b.WriteString("# bash completion for redhaven. Generated from cmd/redhaven/commands.go by TestManPage -update; do not edit.\n")
	b.WriteString("_redhaven() {\n")
	b.WriteString("    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} words\n")
	b.WriteString("    if [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	var top []string
	subs := map[string][]string{}
	for _, c := range commands {
		first, rest, sub := strings.Cut(c.name, " ")
		if sub {
			subs[first] = append(subs[first], rest)
			continue
		}
		top = append(top, c.name)
	}
	fmt.Fprintf(&b, "        COMPREPLY=($(compgen -W '%s help --help --version' -- \"$cur\"))\n", strings.Join(top, " "))
	b.WriteString("        return\n    fi\n")
	b.WriteString("    [ \"$COMP_CWORD\" -gt 2 ] && [ -n \"${COMP_WORDS[2]}\" ] && [ \"${COMP_WORDS[2]#-}\" = \"${COMP_WORDS[2]}\" ] && cmd=\"$cmd ${COMP_WORDS[2]}\"\n")
	b.WriteString("    case \"$cmd\" in\n")
	for _, c := range commands {
		fs, _ := c.newFlagSet()
		var words []string
		fs.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				words = append(words, "--"+f.Name)
			}
		})
		words = append(words, "--help")
		if s := subs[c.name]; len(s) > 0 {
			sort.Strings(s)
			words = append(s, words...)
		}
		fmt.Fprintf(&b, "        %q) words='%s' ;;\n", c.name, strings.Join(words, " "))
	}
	b.WriteString("        *) return ;;\n    esac\n")
	b.WriteString("    case \"${COMP_WORDS[COMP_CWORD-1]}\" in\n")
	b.WriteString("        -c|--config) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n")
	b.WriteString("    esac\n")
	b.WriteString("    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n")
	b.WriteString("}\n")
	b.WriteString("complete -F _redhaven redhaven\n")
	return b.String()
}

// zshCompletion completes command names with their summaries, then the
// command's sub-commands and flags with their usage lines.
func zshCompletion() string {
	var b strings.Builder
	b.WriteString("#compdef redhaven\n")
	b.WriteString("# zsh completion for redhaven. Generated from cmd/redhaven/commands.go by TestManPage -update; do not edit.\n")
	b.WriteString("_redhaven() {\n")
	b.WriteString("    local cmd=${words[2]}\n")
	b.WriteString("    local -a cmds subs flags\n")
	b.WriteString("    if (( CURRENT == 2 )); then\n")
	b.WriteString("        cmds=(\n")
	subs := map[string][]string{}
	for _, c := range commands {
		first, rest, sub := strings.Cut(c.name, " ")
		if sub {
			subs[first] = append(subs[first], zshQuote(rest+":"+c.summary))
			continue
		}
		fmt.Fprintf(&b, "            %s\n", zshQuote(c.name+":"+c.summary))
	}
	b.WriteString("            'help:show the commands or one command'\"'\"'s usage'\n")
	b.WriteString("        )\n")
	b.WriteString("        _describe -t commands 'redhaven command' cmds\n")
	b.WriteString("        return\n    fi\n")
	b.WriteString("    (( CURRENT > 3 )) && [[ -n ${words[3]} && ${words[3]} != -* ]] && cmd=\"$cmd ${words[3]}\"\n")
	b.WriteString("    case $cmd in\n")
	for _, c := range commands {
		fs, _ := c.newFlagSet()
		var flags []string
		fs.VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			spec := "--" + f.Name + "[" + zshBracket(f.Usage) + "]"
			if f.Value.Type() != "bool" {
				action := ""
				if f.Name == "config" {
					action = "_files"
				}
				spec += ":" + f.Name + ":" + action
			}
			flags = append(flags, zshQuote(spec))
		})
		flags = append(flags, zshQuote("--help[show this command's usage]"))
		fmt.Fprintf(&b, "        (%s)\n", zshPattern(c.name))
		if s := subs[c.name]; len(s) > 0 {
			sort.Strings(s)
			fmt.Fprintf(&b, "            subs=(%s)\n", strings.Join(s, " "))
			b.WriteString("            (( CURRENT == 3 )) && [[ ${words[3]} != -* ]] && { _describe -t commands 'sub-command' subs; return }\n")
		}
		fmt.Fprintf(&b, "            flags=(%s) ;;\n", strings.Join(flags, " "))
	}
	b.WriteString("        (*) return 1 ;;\n    esac\n")
	b.WriteString("    _arguments -s $flags '*:argument:'\n")
	b.WriteString("}\n")
	b.WriteString("_redhaven \"$@\"\n")
	return b.String()
}

// zshQuote single-quotes s for zsh.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

// zshBracket makes s safe inside an _arguments description [...].
func zshBracket(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.NewReplacer("[", "(", "]", ")", ":", `\:`).Replace(s)
}

// zshPattern is a case pattern matching name literally (a space in
// "members remove" must be quoted).
func zshPattern(name string) string { return strings.ReplaceAll(name, " ", `\ `) }
