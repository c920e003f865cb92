package verify

import "sync"

// progress delivers Options.OnChunk calls from a goroutine of its own, so
// that a slow callback (the move persists progress in the control
// database) never holds up the comparison: when it falls behind, it skips
// to each table's latest state.
type progress struct {
	fn      func(table string, chunk, chunks int, rows int64, last Key)
	mu      sync.Mutex
	pending []chunkState // the latest state of each changed table
	wake    chan struct{}
	done    chan struct{}
}

type chunkState struct {
	table         string
	chunk, chunks int
	rows          int64
	last          Key
}

// startProgress starts delivering to fn; nil fn delivers nothing.
func startProgress(fn func(table string, chunk, chunks int, rows int64, last Key)) *progress {
	p := &progress{fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for range p.wake {
			p.flush()
		}
		p.flush()
	}()
	return p
}

// post records table's latest state; callers post one table's states in
// order.
func (p *progress) post(s chunkState) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	i := 0
	for i < len(p.pending) && p.pending[i].table != s.table {
		i++
	}
	if i == len(p.pending) {
		p.pending = append(p.pending, s)
	} else {
		p.pending[i] = s
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // a flush is due anyway and will take this state
	}
}

func (p *progress) flush() {
	p.mu.Lock()
	batch := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, s := range batch {
		p.fn(s.table, s.chunk, s.chunks, s.rows, s.last)
	}
}

// stop delivers what is pending and waits for the last call to return.
func (p *progress) stop() {
	close(p.wake)
	<-p.done
}
