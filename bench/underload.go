package bench

import (
	"context"
	"sync"

	"tenantry/load"
)

// underLoad runs the load of lcfg while during runs, stops it when during
// returns, and returns the load's summary with during's error (or else the
// load's).
func underLoad(ctx context.Context, lcfg load.Config, cat load.Catalog, during func() error) (load.Summary, error) {
	stopc := make(chan struct{})
	lcfg.Stop = stopc
	var summary load.Summary
	var lerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		summary, lerr = load.Run(ctx, lcfg, cat, nil)
	}()
	err := during()
	close(stopc)
	wg.Wait()
	if err == nil {
		err = lerr
	}
	return summary, err
}
