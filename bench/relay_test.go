package bench

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestReadHead(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		err      error
	}{
		{"a GET", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", -1, nil},
		{"an answer", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world!", 12, nil},
		{"the name in any case", "HTTP/1.1 200 OK\r\ncontent-length:3\r\n\r\nabc", 3, nil},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, errRelay},
		{"a bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, errRelay},
		{"no colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", 0, errRelay},
		{"too long", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxRelayHead) + "\r\n\r\n", 0, errRelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, n, err := readHead(bufio.NewReaderSize(strings.NewReader(tc.in), 16), nil)
			if !errors.Is(err, tc.err) || (err == nil && n != tc.n) {
				t.Fatalf("readHead = %d, %v; want %d, %v", n, err, tc.n, tc.err)
			}
			if err == nil && !strings.HasSuffix(string(head), "\r\n\r\n") {
				t.Errorf("head %q does not end with its blank line", head)
			}
		})
	}
}

func FuzzReadHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		head, n, err := readHead(bufio.NewReader(bytes.NewReader(in)), nil)
		if !bytes.HasPrefix(in, head) {
			t.Fatalf("head %q is not a prefix of the input", head)
		}
		if err == nil && (n < -1 || !bytes.HasSuffix(head, []byte("\n"))) {
			t.Fatalf("readHead = %q, %d", head, n)
		}
	})
}
