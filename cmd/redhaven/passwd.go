package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redhaven/redhaven/node"
)

func runPasswd(args []string, stdout, stderr io.Writer) int {
	pw, err := readNewPassword(os.Stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "redhaven passwd: %v\n", err)
		return exitError
	}
	h, err := node.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "redhaven passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

// readNewPassword asks twice on a terminal, else reads one line.
func readNewPassword(in *os.File, prompt io.Writer) (string, error) {
	if !isTerminal(in) {
		return readLine(in)
	}
	pw, err := readPassword(in, prompt, "new password: ")
	if err != nil {
		return "", err
	}
	again, err := readPassword(in, prompt, "again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("the two passwords differ")
	}
	return pw, nil
}

// readPassword reads a password from the terminal without echo, or one
// line of in when it is not a terminal.
func readPassword(in *os.File, prompt io.Writer, ask string) (string, error) {
	if !isTerminal(in) {
		return readLine(in)
	}
	fmt.Fprint(prompt, ask)
	restore, err := noEcho(in)
	if err != nil {
		return "", err
	}
	pw, err := readLine(in)
	restore()
	fmt.Fprintln(prompt)
	return pw, err
}

// readLine reads one line (at most 4 KiB), without its line end.
func readLine(in io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no password given")
		}
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password")
	}
	return line, nil
}
