package vip

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Linux capability numbers (linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
)

// checkCaps fails with ErrPermission, naming what is missing, unless the
// process may change addresses (CAP_NET_ADMIN) and, when it has to
// announce them, open raw sockets (CAP_NET_RAW). When /proc cannot be
// read it lets the kernel decide later.
func checkCaps(needRaw bool) error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	missing := missingCaps(bufio.NewScanner(f), needRaw)
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("vip: missing %s: %w", strings.Join(missing, " and "), ErrPermission)
}

// missingCaps reads the CapEff line of /proc/<pid>/status and names the
// needed capabilities that are not in it.
func missingCaps(sc *bufio.Scanner, needRaw bool) []string {
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil
		}
		var missing []string
		if eff&(1<<capNetAdmin) == 0 {
			missing = append(missing, "CAP_NET_ADMIN")
		}
		if needRaw && eff&(1<<capNetRaw) == 0 {
			missing = append(missing, "CAP_NET_RAW")
		}
		return missing
	}
	return nil
}
