package stack

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"tenantry/localproc"
	"tenantry/registry"
)

// Adopt takes over what an earlier provider with the same Dir left running
// when its process died (kill -9 of `tenantry up`): call it once, on a new
// provider, before Deploy. snap is the registry's current snapshot.
//
//   - A stack snap records ready whose instances were started locally (they
//     have PIDs): every instance whose recorded process is alive, is that
//     exact process (localproc.Adopt: not a recycled PID), was started with
//     this provider's binary, arguments and environment, and answers its
//     health check keeps serving, untouched, and is from now on this
//     provider's (Stop and StopAll stop it; an exit is recorded). The
//     others are recorded unhealthy. A stack left with no instance is
//     recorded stopped.
//   - A stack snap records deploying (its deploy died with its owner) is
//     recorded failed.
//   - Every other process recorded in Dir — instances of those deploys,
//     instances found unhealthy or differently configured, stacks the
//     registry no longer runs — is stopped, so nothing is orphaned.
//
// Stacks recorded by ExternalProvider (no PIDs) are left alone. Adopt
// returns the names of the stacks it adopted, sorted. An error means some
// registry write or stop failed; what could be adopted is adopted anyway.
func (p *LocalProvider) Adopt(ctx context.Context, snap *registry.Snapshot) ([]string, error) {
	bin, err := p.prepare()
	if err != nil {
		return nil, err
	}
	recs := p.records()
	var adopted []string
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(snap.Stacks)) {
		st := snap.Stacks[name]
		if !startedLocally(st) {
			continue
		}
		switch st.Status {
		case registry.StackReady:
			rec, ok := p.adoptStack(ctx, bin, st, recs)
			if ok {
				adopted = append(adopted, name)
			}
			if err := p.Store.PutStack(ctx, rec); err != nil {
				errs = append(errs, fmt.Errorf("record stack %s after adoption: %w", name, err))
			}
		case registry.StackDeploying:
			p.logger().Warn("stack was deploying when its provider died; recorded failed", logStack, name)
			if err := p.Store.SetStackStatus(ctx, name, registry.StackFailed); err != nil {
				errs = append(errs, fmt.Errorf("record stack %s failed: %w", name, err))
			}
		}
	}
	for path, rec := range recs {
		p.logger().Warn("stopping a process left by an earlier provider", "process", rec.Name, logPID, rec.PID)
		if err := localproc.StopRecorded(ctx, rec, p.stopTimeout()); err != nil {
			errs = append(errs, err)
			continue
		}
		_ = os.Remove(path)
	}
	return adopted, errors.Join(errs...)
}

// startedLocally tells stacks a LocalProvider recorded from those of an
// ExternalProvider, whose instances have no PID and which never deploy.
func startedLocally(st *registry.Stack) bool {
	if st.Status == registry.StackDeploying {
		return true
	}
	for _, in := range st.Instances {
		if in.PID > 0 {
			return true
		}
	}
	return false
}

// adoptStack adopts what it can of the instances of st and returns the
// stack as it should be recorded now, and whether this provider runs it.
// The records it adopted are removed from recs.
func (p *LocalProvider) adoptStack(ctx context.Context, bin string, st *registry.Stack, recs map[string]localproc.Record) (registry.Stack, bool) {
	ls := &localStack{rec: cloneStack(*st)}
	for i := range ls.rec.Instances {
		ls.rec.Instances[i].Healthy = false // until adopted
	}
	if err := p.claim(ls); err != nil {
		p.logger().Error("adopt stack", logStack, st.Name, logErr, err)
		return cloneStack(*st), false
	}
	spec := Spec{Name: st.Name, Version: st.Version, Instances: len(st.Instances)}
	for i, in := range st.Instances {
		path := p.recordPath(st.Name, i)
		rec, ok := recs[path]
		if !ok || rec.PID != in.PID || rec.URL != in.URL {
			p.logger().Warn("instance has no matching process record; recorded unhealthy", logStack, st.Name, logInstance, i, logPID, in.PID)
			continue
		}
		pr, err := localproc.Adopt(ctx, rec, p.instanceSpec(bin, spec, i))
		if err != nil {
			// Its record stays in recs: the sweep stops the process if
			// it still runs.
			p.logger().Warn("instance not adopted; recorded unhealthy", logStack, st.Name, logInstance, i, logErr, err)
			continue
		}
		delete(recs, path)
		p.mu.Lock()
		ls.procs = append(ls.procs, pr)
		// An exit between Adopt and here was already reported (and found
		// the instance unhealthy); one after it will be.
		ls.rec.Instances[i].Healthy = pr.Err() == nil
		p.mu.Unlock()
		p.logger().Info("instance adopted", logStack, st.Name, logInstance, i, logPID, pr.PID(), "url", pr.URL())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(ls.procs) == 0 {
		delete(p.stacks, st.Name)
		ls.rec.Status = registry.StackStopped
		p.logger().Warn("no instance of the stack survived; recorded stopped", logStack, st.Name)
		return cloneStack(ls.rec), false
	}
	return cloneStack(ls.rec), true
}

// records reads every process record in Dir, by path. Unreadable ones are
// reported and skipped (the processes they named, if any, stay unknown).
func (p *LocalProvider) records() map[string]localproc.Record {
	paths, _ := filepath.Glob(filepath.Join(p.Dir, "*.record"))
	out := make(map[string]localproc.Record, len(paths))
	for _, path := range paths {
		rec, err := localproc.LoadRecord(path)
		if err != nil {
			p.logger().Error("unreadable process record", "path", path, logErr, err)
			continue
		}
		out[path] = rec
	}
	return out
}

// recordIndex returns I when path is the record of instance I of stack
// (DIR/STACK-I.record) and not of another stack whose name starts alike.
func recordIndex(stack, path string) (int, bool) {
	rest, ok := strings.CutPrefix(filepath.Base(path), stack+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(rest, ".record"))
	return n, err == nil && n >= 0
}
