package proxy

import "testing"

// BenchmarkLookupCommand: the fast path's table lookup (every command).
func BenchmarkLookupCommand(b *testing.B) {
	names := [][]byte{[]byte("GET"), []byte("set"), []byte("HSET"), []byte("subscribe"), []byte("EVALSHA"), []byte("unknowncmd")}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		lookupCommand(names[i%len(names)])
	}
}
