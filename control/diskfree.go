package control

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// freeBytes is the space free for unprivileged users on the file system
// holding dir (its nearest existing parent when dir does not exist yet).
func freeBytes(dir string) (int64, error) {
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}
