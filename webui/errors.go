package webui

import (
	"context"
	"errors"
	"net/http"
)

// Kinds of admin errors. An Admin wraps its errors with Classify so that
// an expected condition gets its own HTTP status, never a 500.
var (
	ErrBadRequest = errors.New("bad request")                       // 400
	ErrNotFound   = errors.New("not found")                         // 404
	ErrConflict   = errors.New("not possible now")                  // 409
	ErrNoLeader   = errors.New("no leader")                         // 503
	ErrTimeout    = errors.New("the leader did not answer in time") // 504
)

// Classify marks err as one of the kinds above; the error's text stays
// err's.
func Classify(kind, err error) error {
	if err == nil {
		return nil
	}
	return &classified{kind, err}
}

type classified struct{ kind, err error }

func (e *classified) Error() string   { return e.err.Error() }
func (e *classified) Unwrap() []error { return []error{e.err, e.kind} }

// statusOf is the HTTP status for an admin action's error.
func statusOf(err error) int {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.code
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrNoLeader):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
