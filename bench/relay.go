package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
)

// relay is the reference `bench gateway` measures a hop against: the least
// an HTTP/1.1 hop costs on this machine. Each client connection gets its own
// connection to the backend; a request's head is passed on unparsed (the
// client signs its requests as for the direct side), and a response is read
// by its Content-Length and written back in one write. It validates nothing,
// authenticates nothing and routes nowhere: it is not a proxy, as the raw
// COPY pipe of `bench move` is not a copy. It takes only what the bench
// sends: requests without a body, answers with a Content-Length; anything
// else closes the connection (an error on the client's side).
type relay struct {
	ln      net.Listener
	backend string // host:port
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// maxRelayHead bounds a request's or a response's head.
const maxRelayHead = 64 << 10

var errRelay = errors.New("relay: not a bodiless request or a Content-Length answer")

// startRelay relays a loopback port to backend (an http:// URL) and returns
// the relay's URL.
func startRelay(backend string) (*relay, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	r := &relay{ln: ln, backend: strings.TrimPrefix(backend, "http://"), conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.accept)
	return r, "http://" + ln.Addr().String(), nil
}

func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.track(c, true) {
			c.Close()
			return
		}
		r.wg.Go(func() {
			defer r.track(c, false)
			defer c.Close()
			r.serve(c)
		})
	}
}

// track adds or removes c from the open connections; it refuses to add
// once the relay is closed.
func (r *relay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.conns, c)
		return true
	}
	if r.conns == nil {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) serve(c net.Conn) {
	b, err := net.Dial("tcp", r.backend)
	if err != nil {
		return
	}
	defer b.Close()
	cr, br := bufio.NewReaderSize(c, 4<<10), bufio.NewReaderSize(b, 4<<10)
	var head, out []byte
	for {
		var n int
		head, n, err = readHead(cr, head[:0])
		if err != nil || n > 0 {
			return
		}
		if _, err := b.Write(head); err != nil {
			return
		}
		out, n, err = readHead(br, out[:0])
		if err != nil || n < 0 {
			return
		}
		k := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(br, out[k:]); err != nil {
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// readHead appends one message head (through its blank line) from br to
// buf and returns it with the head's Content-Length (-1 without one). A
// request head that announces a body is an error.
func readHead(br *bufio.Reader, buf []byte) ([]byte, int, error) {
	n := -1
	for first := true; ; first = false {
		start := len(buf)
		for {
			frag, err := br.ReadSlice('\n')
			if buf = append(buf, frag...); len(buf) > maxRelayHead {
				return buf, 0, errRelay
			}
			if err == nil {
				break
			}
			if err != bufio.ErrBufferFull {
				return buf, 0, err
			}
		}
		line := buf[start:]
		if len(line) <= 2 {
			return buf, n, nil
		}
		if first {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		switch {
		case !ok:
			return buf, 0, errRelay
		case bytes.EqualFold(name, []byte("Content-Length")):
			var err error
			if n, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil || n < 0 {
				return buf, 0, errRelay
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return buf, 0, errRelay
		}
	}
}

// close stops accepting, closes every connection and waits for their
// goroutines.
func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	r.wg.Wait()
}
