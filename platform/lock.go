package platform

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file in the data directory whose flock says which
// process owns the platform; it holds that process's PID.
const LockFile = "lock"

// ErrLocked: another process holds the data directory.
var ErrLocked = errors.New("data directory is in use")

// LockedError names the process that holds a data directory.
type LockedError struct {
	Dir string
	PID int // 0 when the holder's PID could not be read
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("data directory %s is in use by another tenantry process", e.Dir)
	}
	return fmt.Sprintf("data directory %s is in use by tenantry process %d (stop it first)", e.Dir, e.PID)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// LockDir makes this process the only owner of the data directory dir
// (created if missing, 0755 like OpenLocal makes it: PostgreSQL, run as
// its own user, must reach the clusters in it): an exclusive flock on DIR/lock, which then
// holds this PID. A second owner, in this process or another, gets a
// *LockedError (errors.Is ErrLocked) naming the holder's PID. The lock
// ends with unlock or with the process — a kill -9 included, so a restarted
// `tenantry up` never finds a stale lock. Processes the owner starts do not
// inherit it (the descriptor is close-on-exec): the gateway and stack
// instances that outlive a killed owner do not keep its successor out.
func LockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: readLockPID(path)}
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory %s: write pid: %w", dir, err)
	}
	// The file stays when unlocked: removing it would let a third process
	// lock a new file while a second one waits on the old.
	return func() { f.Close() }, nil
}

// readLockPID reads the holder's PID from the lock file; 0 if it cannot
// (the holder may be between taking the lock and writing its PID).
func readLockPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
