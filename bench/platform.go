package bench

import (
	"context"
	"os"
	"path/filepath"

	"tenantry/platform"
)

// startPlatform runs a throwaway local platform with its applications for
// benchmark name: a temporary directory (reachable by the PostgreSQL user)
// holding the platform in dir/platform. stop closes the platform and removes
// the directory; on error nothing is left.
func startPlatform(ctx context.Context, name, binary string) (r *platform.Running, dir string, stop func(), err error) {
	dir, err = os.MkdirTemp("", "tenantry-bench-"+name+"-")
	if err != nil {
		return nil, "", nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, "", nil, err
	}
	r, err = platform.Run(ctx, platform.Options{Dir: filepath.Join(dir, "platform"), Binary: binary})
	if err != nil {
		return nil, "", nil, err
	}
	if err := r.StartApps(ctx, platform.AppOptions{}); err != nil {
		r.Close(context.Background())
		return nil, "", nil, err
	}
	return r, dir, func() { r.Close(context.Background()); os.RemoveAll(dir) }, nil
}
