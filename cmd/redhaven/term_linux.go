package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// isTerminal tells whether f is a terminal.
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	return ioctl(f.Fd(), syscall.TCGETS, &t) == nil
}

// noEcho turns the terminal's echo off and returns how to turn it back on.
func noEcho(f *os.File) (restore func(), err error) {
	var old syscall.Termios
	if err := ioctl(f.Fd(), syscall.TCGETS, &old); err != nil {
		return nil, fmt.Errorf("read terminal settings: %w", err)
	}
	t := old
	t.Lflag &^= syscall.ECHO
	t.Lflag |= syscall.ICANON | syscall.ISIG
	if err := ioctl(f.Fd(), syscall.TCSETS, &t); err != nil {
		return nil, fmt.Errorf("turn terminal echo off: %w", err)
	}
	return func() { _ = ioctl(f.Fd(), syscall.TCSETS, &old) }, nil
}

func ioctl(fd uintptr, req uintptr, t *syscall.Termios) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(t))); e != 0 {
		return e
	}
	return nil
}
