package topology

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestReadValue(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    any
		wantErr bool
	}{
		{"simple", "+OK\r\n", "OK", false},
		{"error", "-WRONGPASS invalid username-password pair\r\n", redisError("WRONGPASS invalid username-password pair"), false},
		{"int", ":42\r\n", int64(42), false},
		{"bulk", "$5\r\nhello\r\n", "hello", false},
		{"null bulk", "$-1\r\n", nil, false},
		{"array", "*3\r\n$6\r\nmaster\r\n:100\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n7002\r\n$3\r\n100\r\n",
			[]any{"master", int64(100), []any{[]any{"127.0.0.1", "7002", "100"}}}, false},
		{"bad type", "?x\r\n", nil, true},
		{"missing CR", "+OK\n", nil, true},
		{"short bulk", "$5\r\nhel", nil, true},
		{"bad bulk end", "$2\r\nabcd\r\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readValue(bufio.NewReader(strings.NewReader(tc.in)))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    roleInfo
		wantErr bool
	}{
		{"master", []any{"master", int64(3129659), []any{[]any{"127.0.0.1", "9001", "3129242"}, []any{"127.0.0.1", "9002", "3129543"}}},
			roleInfo{role: RoleMaster, linkUp: true, offset: 3129659, replicas: []string{"127.0.0.1:9001", "127.0.0.1:9002"}}, false},
		{"replica connected", []any{"slave", "127.0.0.1", int64(9000), "connected", int64(3167038)},
			roleInfo{role: RoleReplica, masterAddr: "127.0.0.1:9000", linkUp: true, offset: 3167038}, false},
		{"replica connecting", []any{"slave", "127.0.0.1", int64(9000), "connect", int64(-1)},
			roleInfo{role: RoleReplica, masterAddr: "127.0.0.1:9000", offset: -1}, false},
		{"sentinel", []any{"sentinel", []any{"mymaster"}}, roleInfo{}, true},
		{"garbage", "OK", roleInfo{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRole(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseInstance(t *testing.T) {
	tests := []struct {
		in   string
		want instance
		ok   bool
	}{
		{"slave 127.0.0.1:7002 127.0.0.1 7002 @ mymaster 127.0.0.1 7001", instance{"slave", "127.0.0.1:7002", "mymaster"}, true},
		{"master mymaster 127.0.0.1 7001", instance{"master", "127.0.0.1:7001", "mymaster"}, true},
		{"master mymaster 127.0.0.1 7001 #quorum 2/2", instance{"master", "127.0.0.1:7001", "mymaster"}, true},
		{"sentinel 5f3c 127.0.0.1 26380 @ mymaster 127.0.0.1 7001", instance{"sentinel", "127.0.0.1:26380", "mymaster"}, true},
		{"slave ::1:7002 ::1 7002 @ mymaster ::1 7001", instance{"slave", "[::1]:7002", "mymaster"}, true},
		{"7", instance{}, false},
	}
	for _, tc := range tests {
		got, ok := parseInstance(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseInstance(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// allocDuring returns the bytes allocated while f runs (TotalAlloc delta;
// the test must not run in parallel with others for this to mean much).
func allocDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestReadValueHostile: replies that declare huge or deeply nested values
// are errors, and cost memory in proportion to the bytes sent, never to the
// lengths declared. Before the limits, the first reply allocated 1 GiB and
// the second overflowed the goroutine stack (a fatal error, not a panic).
func TestReadValueHostile(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		in       []byte
		maxAlloc uint64
		errHas   string
	}{
		{"640 bytes of *1048576", bytes.Repeat([]byte("*1048576\r\n"), 64), 64 << 10, "array length 1048576 above the limit"},
		{"5 million *1", bytes.Repeat([]byte("*1\r\n"), 5_000_000), 64 << 10, "nested deeper than 8"},
		{"*65536 repeated (within the count limit)", bytes.Repeat([]byte("*65536\r\n"), 64), 64 << 10, "nested deeper than 8"},
		{"declared 1 MiB bulk, 10 bytes sent", []byte("$1048576\r\n0123456789"), 64 << 10, "EOF"},
		{"declared 64k array, one element sent", []byte("*65536\r\n:1\r\n"), 64 << 10, "EOF"},
		{"bulk above the limit", []byte("$1048577\r\n"), 64 << 10, "bulk length 1048577 above the limit"},
		{"negative array length", []byte("*-2\r\n"), 64 << 10, "bad array length"},
		{"too many elements in one reply", append([]byte("*3\r\n"), bytes.Repeat(append([]byte("*65536\r\n"), bytes.Repeat([]byte(":1\r\n"), 65536)...), 3)...),
			16 * mib, "more than 131072 elements"},
		{"too many bulk bytes in one reply", append([]byte("*5\r\n"), bytes.Repeat([]byte("$1048576\r\n"+strings.Repeat("x", 1048576)+"\r\n"), 5)...),
			16 * mib, "reply longer than 4194304 bytes"},
		{"too many line bytes in one reply", append([]byte("*2000\r\n"), bytes.Repeat([]byte("+"+strings.Repeat("x", 4000)+"\r\n"), 2000)...),
			16 * mib, "reply longer than 4194304 bytes"},
		{"line longer than the buffer", append(bytes.Repeat([]byte("+"), 10000), "\r\n"...), 64 << 10, "line longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(bytes.NewReader(tc.in), 4096)
			var err error
			alloc := allocDuring(func() { _, err = readValue(br) })
			t.Logf("%d bytes in: allocated %d bytes, err %v", len(tc.in), alloc, err)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
			}
			if alloc > tc.maxAlloc {
				t.Fatalf("allocated %d bytes, want at most %d", alloc, tc.maxAlloc)
			}
		})
	}
}

// TestReadValueLargeDeployment: the limits leave room for what a large
// deployment really answers.
func TestReadValueLargeDeployment(t *testing.T) {
	var b bytes.Buffer
	// SENTINEL REPLICAS with 2,000 replicas of 21 fields each (Redis 7).
	fmt.Fprintf(&b, "*2000\r\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&b, "*42\r\n")
		for f := 0; f < 21; f++ {
			k, v := fmt.Sprintf("field-%d", f), fmt.Sprintf("value-of-replica-%d-%d", i, f)
			fmt.Fprintf(&b, "$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
		}
	}
	// ROLE of a master with 10,000 replicas.
	fmt.Fprintf(&b, "*3\r\n$6\r\nmaster\r\n:123456789\r\n*10000\r\n")
	for i := 0; i < 10000; i++ {
		ip, port := fmt.Sprintf("10.0.%d.%d", i/250, i%250), "6379"
		fmt.Fprintf(&b, "*3\r\n$%d\r\n%s\r\n$4\r\n%s\r\n$9\r\n123456789\r\n", len(ip), ip, port)
	}
	// INFO replication of that master.
	var info strings.Builder
	info.WriteString("# Replication\r\nrole:master\r\nconnected_slaves:10000\r\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&info, "slave%d:ip=10.0.%d.%d,port=6379,state=online,offset=123456789012,lag=0\r\n", i, i/250, i%250)
	}
	fmt.Fprintf(&b, "$%d\r\n%s\r\n", info.Len(), info.String())

	br := bufio.NewReaderSize(&b, 4096)
	v, err := readValue(br)
	if arr, _ := v.([]any); err != nil || len(arr) != 2000 || len(flatMap(arr[1999])) != 21 {
		t.Fatalf("SENTINEL REPLICAS: err %v, %d entries", err, len(arr))
	}
	v, err = readValue(br)
	if err != nil {
		t.Fatalf("ROLE: %v", err)
	}
	if ri, err := parseRole(v); err != nil || len(ri.replicas) != 10000 {
		t.Fatalf("ROLE: %d replicas, err %v", len(ri.replicas), err)
	}
	v, err = readValue(br)
	if s, _ := v.(string); err != nil || s != info.String() {
		t.Fatalf("INFO: %d of %d bytes, err %v", len(s), info.Len(), err)
	}
}

// encodeValue writes v back as RESP2 (the inverse of readValue).
func encodeValue(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("$-1\r\n")
	case string:
		fmt.Fprintf(b, "$%d\r\n%s\r\n", len(x), x)
	case int64:
		fmt.Fprintf(b, ":%d\r\n", x)
	case redisError:
		fmt.Fprintf(b, "-%s\r\n", string(x))
	case []any:
		fmt.Fprintf(b, "*%d\r\n", len(x))
		for _, e := range x {
			encodeValue(b, e)
		}
	}
}

// FuzzReadValue: any input is parsed or refused without a panic, a
// parsed value survives a round trip, and what follows a reply is left
// unread. The seed corpus (testdata/fuzz/FuzzReadValue: the hostile
// replies of the issue, truncated and oversized values, real ROLE and
// SENTINEL replies) runs with every `go test`.
func FuzzReadValue(f *testing.F) {
	f.Add([]byte("*3\r\n$6\r\nmaster\r\n:100\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n7002\r\n$3\r\n100\r\n"))
	f.Add([]byte("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:3167038\r\n"))
	f.Add([]byte("-BUSY Redis is busy running a script.\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
		v, err := readValue(br)
		if err != nil {
			return
		}
		// The rest of the input must still be there, unread.
		rest, _ := io.ReadAll(br)
		var b bytes.Buffer
		encodeValue(&b, v)
		v2, err := readValue(bufio.NewReader(bytes.NewReader(b.Bytes())))
		if err != nil {
			t.Fatalf("re-encoded value %q does not parse: %v", b.Bytes(), err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip: %#v became %#v", v, v2)
		}
		if !bytes.HasSuffix(in, rest) || len(rest) > len(in) {
			t.Fatalf("rest %q is not a suffix of the input", rest)
		}
	})
}
