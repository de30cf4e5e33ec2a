package webui

import (
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// yieldingCompare answers exactly as x/crypto's CompareHashAndPassword.
func TestYieldingCompareMatchesBcrypt(t *testing.T) {
	pws := [][]byte{[]byte("a"), []byte("correct horse battery staple"), []byte("ünïcödé"), []byte(strings.Repeat("x", 72))}
	for i := 0; i < 6; i++ {
		b := make([]byte, 1+i*13)
		rand.Read(b)
		pws = append(pws, b)
	}
	for i, pw := range pws {
		cost := bcrypt.MinCost + i%3
		h, err := bcrypt.GenerateFromPassword(pw, cost)
		if err != nil {
			t.Fatal(err)
		}
		variants := [][]byte{h}
		for _, v := range []string{"$2b$", "$2y$"} { // same algorithm, other prefixes
			variants = append(variants, append([]byte(v), h[4:]...))
		}
		for _, hv := range variants {
			others := [][]byte{pw, append(append([]byte(nil), pw...), 'x'), pw[:len(pw)-1], []byte("wrong")}
			for _, try := range others {
				want := bcrypt.CompareHashAndPassword(hv, try)
				got := yieldingCompare(hv, try)
				if (want == nil) != (got == nil) {
					t.Errorf("hash %s, password %q: x/crypto %v, yielding %v", hv, try, want, got)
				}
			}
		}
	}
	for _, bad := range []string{"", "$2a$10$short", "$9a$10$" + strings.Repeat("a", 53), "plain text that is long enough to be a bcrypt hash, really"} {
		if err := yieldingCompare([]byte(bad), []byte("pw")); err == nil {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
}

func BenchmarkCompare(b *testing.B) {
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	b.Run("x/crypto", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = bcrypt.CompareHashAndPassword(h, []byte("pw"))
		}
	})
	b.Run("yielding", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = yieldingCompare(h, []byte("pw"))
		}
	})
}
