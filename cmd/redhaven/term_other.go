//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal is false off Linux: passwords are read as lines of stdin.
func isTerminal(f *os.File) bool { return false }

func noEcho(f *os.File) (func(), error) { return nil, errors.New("no terminal support") }
