package main

import "errors"

// errorCode names an error for machine-readable output. The control plane
// client (apiError) carries the server's code; other errors are "error".
func errorCode(err error) string {
	var c interface{ ErrorCode() string }
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	if isUsage(err) {
		return "usage"
	}
	return "error"
}

func isUsage(err error) bool { return errors.Is(err, errUsage) }
