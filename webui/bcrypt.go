package webui

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/blowfish"
)

// yieldingCompare is bcrypt.CompareHashAndPassword, computed the same way
// (the same blowfish calls as golang.org/x/crypto/bcrypt) but pausing
// between slices of the key schedule. It is what the bcrypt thread runs
// where its priority could not be lowered (bcryptthread.go): with one P, Go's
// scheduler would otherwise let a 60 ms bcrypt hold the CPU for 10 ms
// slices; a short sleep leaves the thread idle, so the runtime polls the
// network and runs the ready goroutines before bcrypt goes on. A slice is
// about yieldEvery x 60 µs of CPU at cost 10.
func yieldingCompare(hash, pw []byte) error {
	cost, err := bcrypt.Cost(hash) // validates the format
	if err != nil {
		return err
	}
	// $2a$10$ (or $2$10$), then 22 characters of salt and 31 of hash.
	n := 4
	if hash[2] == '$' {
		n = 3
	}
	rest := hash[n+3:]
	if len(rest) != encodedSaltSize+encodedHashSize {
		return bcrypt.ErrHashTooShort
	}
	salt, want := rest[:encodedSaltSize], rest[encodedSaltSize:]
	csalt, err := bcryptDecode(salt)
	if err != nil {
		return err
	}
	ckey := append(append([]byte(nil), pw...), 0) // C bcrypt uses the trailing NUL
	c, err := blowfish.NewSaltedCipher(ckey, csalt)
	if err != nil {
		return err
	}
	rounds := uint64(1) << cost
	for i := uint64(0); i < rounds; i++ {
		blowfish.ExpandKey(ckey, c)
		blowfish.ExpandKey(csalt, c)
		if i%yieldEvery == yieldEvery-1 {
			time.Sleep(yieldSleep)
		}
	}
	data := []byte("OrpheanBeholderScryDoubt")
	for i := 0; i < 24; i += 8 {
		for j := 0; j < 64; j++ {
			c.Encrypt(data[i:i+8], data[i:i+8])
		}
	}
	got := bcryptEncoding.EncodeToString(data[:23]) // C bcrypt encodes 23 of the 24 bytes
	if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
		return bcrypt.ErrMismatchedHashAndPassword
	}
	return nil
}

const (
	encodedSaltSize = 22
	encodedHashSize = 31
	yieldEvery      = 4
	yieldSleep      = 20 * time.Microsecond
)

var bcryptEncoding = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

func bcryptDecode(s []byte) ([]byte, error) {
	b, err := bcryptEncoding.DecodeString(string(s))
	if err != nil {
		return nil, errors.New("bcrypt: bad salt encoding")
	}
	return b, nil
}
