package webui

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The admin socket: the CLI on the node talks to the agent over a Unix
// socket, and every request over it is an admin's. Who may connect is the
// kernel's decision: connecting needs write permission on the socket file,
// which is mode 0660, owned by the agent's user and group (redhaven:redhaven
// under the packaged unit), so root and the members of the agent's group
// may, nobody else. The agent does not look at the peer's credentials
// (SO_PEERCRED) on top: the file's permissions are the one rule, the one
// an operator can see with ls -l and change with chgrp/chmod.

// SocketMode is the admin socket's permission bits.
const SocketMode fs.FileMode = 0o660

// listenAdminSocket binds path as the admin socket. A socket file left by
// an agent that died is replaced; one that another agent still serves is
// an error, as is any other kind of file there.
func listenAdminSocket(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("http.admin_socket %s: %w (set http.admin_socket to a writable path, or \"\" to disable the socket)", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("http.admin_socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("http.admin_socket %s: in use by another running agent", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("http.admin_socket %s: remove stale socket: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("http.admin_socket %s: %w", path, err)
	}
	// Until this chmod the umask applies (0022 or the unit's 0027): nobody
	// but the owner may write, so nobody else can connect in between.
	if err := os.Chmod(path, SocketMode); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("http.admin_socket %s: chmod: %w", path, err)
	}
	return ln, nil
}
