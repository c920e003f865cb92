package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"tenantry/load"
	"tenantry/move"
)

// moveFlips is how many flips Move measures under load: promote, cutback,
// promote, cutback, promote.
const moveFlips = 5

// pauseFigures are the pause figures of a series of flips.
type pauseFigures struct {
	// MS is the median pause, MaxMS the longest; FlipsMS every flip's in
	// order.
	MS, MaxMS float64
	FlipsMS   []float64
	// PhasesMS is the median of each part of the pause over the flips.
	PhasesMS map[string]float64
}

// flipsUnderLoad runs the load of lcfg and, two seconds into it, flips move
// id moveFlips times (promote, then cutback and promote in turn), each
// flip a second after the one before ended, and stops the load two seconds
// after the last. It returns the pause figures and the load's summary.
func flipsUnderLoad(ctx context.Context, mv *move.Service, id string, lcfg load.Config, cat load.Catalog, out io.Writer) (pauseFigures, load.Summary, error) {
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	var flips []move.FlipRecord
	summary, err := underLoad(ctx, lcfg, cat, func() error {
		sleep(2 * time.Second)
		for i := range moveFlips {
			if i > 0 {
				sleep(time.Second)
			}
			cmd := move.SignalPromote
			if i%2 == 1 {
				cmd = move.SignalCutback
			}
			st, err := flipWhenReady(ctx, mv, id, cmd)
			if err != nil {
				return err
			}
			if len(st.Data.Flips) != i+1 {
				return fmt.Errorf("%s did not flip: %s", cmd, st.Data.LastError)
			}
			f := st.Data.Flips[i]
			flips = append(flips, f)
			fmt.Fprintf(out, "%s under load: pause %.1f ms %s\n", cmd, f.PauseMS, phaseList(f.Phases))
		}
		sleep(2 * time.Second)
		return nil
	})
	return pauseFiguresOf(flips), summary, err
}

// flipReadyWithin bounds how long flipWhenReady retries a flip its
// pre-checks refuse.
const flipReadyWithin = 2 * time.Minute

// flipWhenReady sends cmd (promote or cutback) and waits for the flip. A
// flip the move's pre-checks refuse (typically: the link just made the other
// way still lags, decoding the WAL its side wrote meanwhile) is asked again
// every half second, within flipReadyWithin: nothing was paused.
func flipWhenReady(ctx context.Context, mv *move.Service, id, cmd string) (*move.Info, error) {
	deadline := time.Now().Add(flipReadyWithin)
	for {
		st, err := mv.Command(ctx, id, cmd, true)
		if !errors.Is(err, move.ErrPrecheck) || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

func pauseFiguresOf(flips []move.FlipRecord) pauseFigures {
	p := pauseFigures{PhasesMS: map[string]float64{}}
	phases := map[string][]float64{}
	for _, f := range flips {
		p.FlipsMS = append(p.FlipsMS, f.PauseMS)
		p.MaxMS = max(p.MaxMS, f.PauseMS)
		for k, v := range f.Phases {
			phases[k] = append(phases[k], float64(v))
		}
	}
	p.MS = median(p.FlipsMS)
	for k, vs := range phases {
		p.PhasesMS[k] = median(vs)
	}
	return p
}

// phaseList prints a pause's parts in ms, in order of name.
func phaseList(phases map[string]int) string {
	s := ""
	for _, k := range slices.Sorted(maps.Keys(phases)) {
		s += fmt.Sprintf(" %s %d", k, phases[k])
	}
	return "(" + s[min(1, len(s)):] + ")"
}
