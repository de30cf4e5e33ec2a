//go:build !linux

package vip

// hookArgv runs the hook with `sh -c`: capability sets are Linux's.
func hookArgv(_ bool, command string) ([]string, error) {
	return []string{"/bin/sh", "-c", command}, nil
}
