package main

import "errors"

// errorCode names an error for machine-readable output. The control plane
// client (apiError) carries the server's code; other errors are "error".
func errorCode(err error) string {
	type coder interface{ ErrorCode() string }
	for e := err; e != nil; {
		if c, ok := e.(coder); ok {
			return c.ErrorCode()
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	if isUsage(err) {
		return "usage"
	}
	return "error"
}

func isUsage(err error) bool { return errors.Is(err, errUsage) }
