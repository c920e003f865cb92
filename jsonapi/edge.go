package jsonapi

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Codes of the answers this package gives for every server. They are part
// of each server's documented vocabulary and stable.
const (
	// CodeNotFound (404): no endpoint at this path, including a path that is
	// not in canonical form ("//metrics", "/v1/../admin"), which net/http
	// would answer with a 307 redirect and an HTML body.
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed (405): the path exists for other methods, listed
	// in the Allow header.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeBadRequest (400): net/http could not parse the request (a
	// malformed request line or header, a missing Host).
	CodeBadRequest = "bad_request"
	// CodeHeaderTooLarge (431): the request line and headers together exceed
	// the server's limit (httpedge.Limits.MaxHeaderBytes); an oversized URL
	// is answered this way too.
	CodeHeaderTooLarge = "header_too_large"
	// CodeNotImplemented (501): a transfer encoding net/http does not
	// implement.
	CodeNotImplemented = "not_implemented"
	// CodeExpectationFailed (417): an Expect header other than
	// "100-continue".
	CodeExpectationFailed = "expectation_failed"
	// CodeVersionNotSupported (505): an HTTP version other than 1.x.
	CodeVersionNotSupported = "version_not_supported"
)

// Error is the error object of every tenantry server's error body.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError writes the platform's error body,
// {"error":{"code":"...","message":"..."}}, with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	b, _ := json.Marshal(map[string]Error{"error": {Code: code, Message: message}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// CanonicalPath reports whether p is a path a ServeMux serves as it is: it
// starts with "/" and has no empty, "." or ".." segment (a trailing "/" is
// allowed). For any other path net/http answers a redirect to the cleaned
// path in HTML; servers answer 404 instead (NotCanonical), and the gateway
// never forwards such a path to an instance.
func CanonicalPath(p string) bool {
	if p == "" || p[0] != '/' || strings.Contains(p, "//") {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// NotCanonical answers a request whose path is not canonical: 404
// not_found, in JSON.
func NotCanonical(w http.ResponseWriter, r *http.Request) {
	WriteError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: the path "+strconv.Quote(r.URL.Path)+" is not in canonical form")
}

// Canonical serves h only requests whose path is canonical, and answers
// the others with NotCanonical.
func Canonical(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !CanonicalPath(r.URL.Path) {
			NotCanonical(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// methods are the methods Allowed tries when it lists what a path allows.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// Allowed returns the methods mux serves r's path with, other than through
// its catch-all pattern "/" (empty when none).
func Allowed(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	probe := *r
	for _, m := range methods {
		probe.Method = m
		if _, pattern := mux.Handler(&probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

// Unmatched answers a request mux has no pattern for, when registered as
// mux's catch-all "/": 405 method_not_allowed with an Allow header when the
// path exists for other methods, else 404 not_found. (With a catch-all, a
// ServeMux no longer answers 405 by itself; without one it answers both in
// text.)
func Unmatched(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if allow := Allowed(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			WriteError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allow, ", "))
			return
		}
		WriteError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	}
}

// Listener wraps ln so that the answers net/http gives by itself, before a
// handler runs, are JSON like every other answer: a request line and
// headers over the server's MaxHeaderBytes (431 header_too_large), a request
// it cannot parse (400 bad_request), a transfer encoding it does not
// implement (501 not_implemented), an HTTP version other than 1.x (505
// version_not_supported), an Expect header other than 100-continue (417
// expectation_failed). net/http offers no hook for them. The first four it
// writes straight to the connection in text/plain, recognisable by their
// exact form: a status line followed by exactly "Content-Type: text/plain;
// charset=utf-8", "Connection: close" and a blank line, with no Date header,
// which every handler's response has. The 417 is a status line and an empty
// body, a status no tenantry handler answers. The wrapper rewrites these and
// passes everything else through untouched.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return conn{c}, nil
}

type conn struct{ net.Conn }

// cannedHeaders follow the status line of every answer net/http writes
// without a handler (net/http's server.go, errorHeaders).
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c conn) Write(p []byte) (int, error) {
	if out, ok := rewriteCanned(p); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// expectationFailed is how net/http answers an Expect header other than
// "100-continue", before any handler: a 417 with an empty body.
var expectationFailed = []byte("HTTP/1.1 417 Expectation Failed\r\n")

// rewriteCanned turns one of net/http's own text (or empty) answers into
// JSON.
func rewriteCanned(p []byte) ([]byte, bool) {
	if bytes.HasPrefix(p, expectationFailed) && bytes.HasSuffix(p, []byte("\r\nContent-Length: 0\r\n\r\n")) {
		return cannedJSON(http.StatusExpectationFailed, CodeExpectationFailed, "only the expectation 100-continue is supported"), true
	}
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !ok || len(rest) < 3 {
		return nil, false
	}
	statusLine, text, ok := bytes.Cut(rest, []byte(cannedHeaders))
	if !ok || bytes.ContainsAny(statusLine, "\r\n") {
		return nil, false
	}
	status, err := strconv.Atoi(string(statusLine[:3]))
	if err != nil || status < 400 {
		return nil, false
	}
	code := CodeBadRequest
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		code = CodeHeaderTooLarge
	case http.StatusNotImplemented:
		code = CodeNotImplemented
	case http.StatusHTTPVersionNotSupported:
		code = CodeVersionNotSupported
	}
	msg := strings.TrimSpace(string(text))
	if msg == "" {
		msg = http.StatusText(status)
	}
	return cannedJSON(status, code, msg), true
}

// cannedJSON is a whole response, closing the connection, with the
// platform's error body.
func cannedJSON(status int, code, msg string) []byte {
	body, _ := json.Marshal(map[string]Error{"error": {Code: code, Message: msg}})
	body = append(body, '\n')
	return slices.Concat([]byte("HTTP/1.1 "), []byte(strconv.Itoa(status)+" "+http.StatusText(status)),
		[]byte("\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"), body)
}
