package main

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// SIGHUP reaches the reload (the agent's TLS certificate reload), and does
// not end the process.
func TestReloadOnHUP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	called := make(chan struct{}, 4)
	reloadOnHUP(ctx, func() error { called <- struct{}{}; return nil })
	for i := 0; i < 2; i++ {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case <-called:
		case <-time.After(5 * time.Second):
			t.Fatalf("SIGHUP %d: no reload within 5s", i+1)
		}
	}
}
