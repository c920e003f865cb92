package control

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// MoveFailpoint returns a move hook (move.Config.Hook, which isolations and
// switchovers call too) for tests that kill a control-plane replica at a
// chosen point of a move, as etcd's failpoints do: spec is "move:POINT" (`tenantry control` reads it from
// $TENANTRY_FAILPOINT, file from $TENANTRY_FAILPOINT_FILE). At POINT the
// replica creates file, writes its PID into it and blocks until its step
// is cancelled or the process killed. It fires once per file: a replica that
// finds the file already there goes on, so the replica that takes the move
// over is not held too. Nil (no hook) when spec or file is empty.
func MoveFailpoint(spec, file string) func(ctx context.Context, point string) error {
	at, ok := strings.CutPrefix(spec, "move:")
	if !ok || at == "" || file == "" {
		return nil
	}
	return func(ctx context.Context, point string) error {
		if point != at {
			return nil
		}
		f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil // fired already, in this or another replica
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
		<-ctx.Done()
		return ctx.Err()
	}
}
