package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// The hand-over travels over a SOCK_SEQPACKET Unix socket (message
// boundaries kept, so each message's descriptors arrive with it): a few
// messages, each a JSON handoffMsg with at most handoffFDs descriptors
// (SCM_RIGHTS), in the order of its listeners and then its sessions; the
// last one says End.

const (
	handoffFDs      = 64
	handoffMsgBytes = 160 << 10 // below the default socket buffer (212992)
	handoffReadBuf  = 256 << 10
)

type handoffMsg struct {
	Listeners []handoffListener `json:"listeners,omitempty"`
	Sessions  []SessionState    `json:"sessions,omitempty"`
	End       bool              `json:"end,omitempty"`
}

type handoffListener struct {
	Name   string `json:"name"`
	Listen string `json:"listen"`
}

// SendHandoff writes h to c (a SOCK_SEQPACKET Unix socket). It does not
// close h's files.
func SendHandoff(c *net.UnixConn, h *Handoff) error {
	var msg handoffMsg
	var fds []int
	size := 0
	flush := func(end bool) error {
		msg.End = end
		b, err := json.Marshal(&msg)
		if err != nil {
			return err
		}
		var oob []byte
		if len(fds) > 0 {
			oob = syscall.UnixRights(fds...)
		}
		if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
			return fmt.Errorf("hand-over: send: %w", err)
		}
		msg, fds, size = handoffMsg{}, fds[:0], 0
		return nil
	}
	for _, l := range h.Listeners {
		msg.Listeners = append(msg.Listeners, handoffListener{Name: l.Name, Listen: l.Listen})
		fds = append(fds, int(l.File.Fd()))
	}
	for _, s := range h.Sessions {
		n := 200 + len(s.State.Pending)*4/3
		for _, r := range s.State.Replays {
			n += len(r.Raw) * 4 / 3
		}
		for _, names := range s.State.Subs {
			for _, name := range names {
				n += len(name) + 4
			}
		}
		if len(fds) > 0 && (len(fds) >= handoffFDs || size+n > handoffMsgBytes) {
			if err := flush(false); err != nil {
				return err
			}
		}
		msg.Sessions = append(msg.Sessions, s.State)
		fds = append(fds, int(s.File.Fd()))
		size += n
	}
	return flush(true)
}

// ReceiveHandoff reads what SendHandoff wrote. On an error it closes every
// descriptor it received.
func ReceiveHandoff(c *net.UnixConn) (*Handoff, error) {
	h := &Handoff{}
	buf := make([]byte, handoffReadBuf)
	oob := make([]byte, syscall.CmsgSpace(handoffFDs*4))
	for {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("hand-over: receive: %w", err)
		}
		files, err := parseRights(oob[:oobn])
		if err == nil && flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
			err = errors.New("message truncated")
		}
		var msg handoffMsg
		if err == nil {
			err = json.Unmarshal(buf[:n], &msg)
		}
		if err == nil && len(files) != len(msg.Listeners)+len(msg.Sessions) {
			err = fmt.Errorf("%d descriptors for %d sockets", len(files), len(msg.Listeners)+len(msg.Sessions))
		}
		if err != nil {
			for _, f := range files {
				_ = f.Close()
			}
			h.Close()
			return nil, fmt.Errorf("hand-over: receive: %w", err)
		}
		for i, l := range msg.Listeners {
			h.Listeners = append(h.Listeners, ListenerHandoff{Name: l.Name, Listen: l.Listen, File: files[i]})
		}
		for i, st := range msg.Sessions {
			h.Sessions = append(h.Sessions, SessionHandoff{State: st, File: files[len(msg.Listeners)+i]})
		}
		if msg.End {
			return h, nil
		}
	}
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range cmsgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "handover"))
		}
	}
	return files, nil
}
