package control

import (
	"bytes"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"

	"tenantry/jsonapi"
)

// TestErrorCodes_documented: every code a client of the control API can
// receive — each entry of the error table, "internal", and the answers
// given before a handler runs (jsonapi) — is a row of the README's table
// with its status, and the table names no other code.
func TestErrorCodes_documented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The table is in the section on tenants, clusters and aliases.
	_, section, _ := bytes.Cut(readme, []byte("\n## Tenants, clusters, aliases\n"))
	section, _, _ = bytes.Cut(section, []byte("\n## "))
	documented := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (\\d{3}) \\|").FindAllSubmatch(section, -1) {
		status, _ := strconv.Atoi(string(m[2]))
		documented[string(m[1])] = status
	}
	want := map[string]int{
		"internal":                      http.StatusInternalServerError,
		jsonapi.CodeNotFound:            http.StatusNotFound,
		jsonapi.CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
		jsonapi.CodeBadRequest:          http.StatusBadRequest,
		jsonapi.CodeHeaderTooLarge:      http.StatusRequestHeaderFieldsTooLarge,
		jsonapi.CodeNotImplemented:      http.StatusNotImplemented,
		jsonapi.CodeExpectationFailed:   http.StatusExpectationFailed,
		jsonapi.CodeVersionNotSupported: http.StatusHTTPVersionNotSupported,
	}
	for _, e := range errorCodes {
		want[e.code] = e.status
	}
	for code, status := range want {
		t.Run(code, func(t *testing.T) {
			if got, ok := documented[code]; !ok || got != status {
				t.Errorf("README's table: %q documented %v with status %d, want status %d", code, ok, got, status)
			}
		})
	}
	for code := range documented {
		if _, ok := want[code]; !ok {
			t.Errorf("README's table documents %q, which the control API never answers", code)
		}
	}
}
