package dashboard

import (
	"bytes"
	"fmt"
	"net/http"
	"time"
)

// keepAlive is how often an idle stream sends a comment, so that proxies
// and the browser keep the connection.
const keepAlive = 15 * time.Second

// stream serves a live view as server-sent events: it renders the view's
// fragment every interval (0: StreamInterval) and sends it (event "update", the HTML as
// data) when it changed. It ends when the client goes away. A render error
// is sent as event "error" and ends the stream; the browser reconnects.
func (d *Dashboard) stream(w http.ResponseWriter, r *http.Request, interval time.Duration, render func() ([]byte, error)) error {
	b, err := render()
	if err != nil {
		return err // before any byte is sent: a plain error status
	}
	rc := http.NewResponseController(w)
	// The API's write timeout bounds requests, not this stream.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if interval == 0 {
		interval = d.cfg.StreamInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last []byte
	idle := time.Now()
	for {
		if err != nil {
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", bytes.ReplaceAll([]byte(err.Error()), []byte("\n"), []byte(" ")))
			return rc.Flush()
		}
		if !bytes.Equal(b, last) {
			writeEvent(w, "update", b)
			last, idle = b, time.Now()
		} else if time.Since(idle) > keepAlive {
			fmt.Fprint(w, ": keep-alive\n\n")
			idle = time.Now()
		}
		if err := rc.Flush(); err != nil {
			return nil // the client went away
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-d.closed:
			return nil
		case <-tick.C:
		}
		b, err = render()
	}
}

// writeEvent writes one event; each line of data becomes a data field.
func writeEvent(w http.ResponseWriter, name string, data []byte) {
	fmt.Fprintf(w, "event: %s\n", name)
	for line := range bytes.SplitSeq(bytes.TrimRight(data, "\n"), []byte("\n")) {
		fmt.Fprintf(w, "data: %s\n", line)
	}
	fmt.Fprint(w, "\n")
}

// liveView is a page whose "live" template is also streamed: load reads
// its data (and title) for the page and for every render of the stream.
type liveView struct {
	page, nav string
	load      func(r *http.Request) (data any, title string, err error)
	// interval between renders of the stream; default StreamInterval.
	interval time.Duration
}

// handleLive serves v's page at pattern and its stream at streamPattern.
// The page shows an action's refusal passed in the "error" parameter.
func (d *Dashboard) handleLive(pattern, streamPattern string, v liveView) {
	d.mux.Handle(pattern, d.view(func(w http.ResponseWriter, r *http.Request, p *page) error {
		data, title, err := v.load(r)
		if err != nil {
			return err
		}
		p.Title, p.Nav, p.Data, p.Error = title, v.nav, data, r.URL.Query().Get("error")
		return d.render(w, http.StatusOK, v.page, p)
	}))
	d.mux.Handle(streamPattern, d.view(func(w http.ResponseWriter, r *http.Request, p *page) error {
		return d.stream(w, r, v.interval, func() ([]byte, error) {
			data, _, err := v.load(r)
			if err != nil {
				return nil, err
			}
			p.Data = data
			return d.fragment(v.page, "live", p)
		})
	}))
}
