package topology

import (
	"bufio"
	"reflect"
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
