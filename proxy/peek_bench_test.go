package proxy

import "testing"

// BenchmarkRequestPeek frames a redis-benchmark-like pipeline of 16 SETs
// (ns/op is per command).
func BenchmarkRequestPeek(b *testing.B) {
	var batch []byte
	for i := 0; i < 16; i++ {
		batch = appendCommandStrings(batch, "SET", "key:__rand_int__", "xxx")
	}
	r := newRequestReader(512 << 20)
	b.SetBytes(int64(len(batch) / 16))
	for i := 0; i < b.N; i += 16 {
		n := copy(r.space(), batch)
		r.end += n
		for {
			raw, _, err := r.peek(false)
			if err != nil {
				b.Fatal(err)
			}
			if raw == nil {
				break
			}
			r.consume(len(raw))
		}
	}
}
