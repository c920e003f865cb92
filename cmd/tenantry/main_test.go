package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"tenantry/tenantsig"
)

// TestMain_ExitCodes runs the CLI's entry point as a user would and checks
// the documented exit codes and error output (no database needed: every
// case is refused before anything is contacted).
func TestMain_ExitCodes(t *testing.T) {
	t.Setenv("TENANTRY_API_KEY", "")
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"help", []string{"--help"}, exitOK, ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"unknown flag", []string{"status", "--nope"}, exitUsage, "unknown flag"},
		{"bad output format", []string{"--output", "yaml", "status"}, exitUsage, "--output must be text or json"},
		{"missing argument", []string{"tenant", "show"}, exitUsage, "accepts 1 arg"},
		{"no platform", []string{"--data-dir", empty, "status"}, exitUsage, "run `tenantry up`"},
		{"move without --to", []string{"move", "start", "acme"}, exitUsage, "--to is required"},
		{"bad route weight", []string{"route", "set", "acme", "blue=heavy"}, exitUsage, "non-negative integer"},
		{"bad stack name", []string{"stack", "deploy", "Bad_Name", "--instances", "1"}, exitUsage, "must match"},
		// Secrets never in flag values (`ps` shows them): env or files only.
		{"no --token", []string{"--token", "adm_x", "status"}, exitUsage, "unknown flag: --token"},
		{"no gateway --secret", []string{"gateway", "--secret", "s"}, exitUsage, "unknown flag: --secret"},
		{"no oms --secret", []string{"oms", "--secret", "s"}, exitUsage, "unknown flag: --secret"},
		{"gateway without a key", []string{"gateway", "--control-dsn", "host=nowhere"}, exitUsage, "TENANTRY_HEADER_ROOT_KEY"},
		{"negative rate limit", []string{"tenant", "limits", "acme", "--rate", "-1"}, exitUsage, "limits must be between"},
		{"oms without its stack", []string{"oms", "--control-dsn", "host=nowhere"}, exitUsage, "--stack"},
		{"bench gateway with no such nginx", []string{"bench", "gateway", "--nginx", "/nonexistent/nginx"}, exitUsage, "--nginx"},
		{"load tenant without a key", []string{"load", "--gateway", "http://127.0.0.1:1", "--tenant", "acme"}, exitUsage, "TENANTRY_API_KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			t.Setenv("TENANTRY_API", "")
			t.Setenv("TENANTRY_TOKEN", "")
			t.Setenv("TENANTRY_SECRET", "")
			t.Setenv("TENANTRY_HEADER_ROOT_KEY", "")
			t.Setenv("TENANTRY_DATA_DIR", empty)
			code := MainContext(context.Background(), tc.args, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if tc.want != "" && !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", errb.String(), tc.want)
			}
		})
	}
}

// TestMain_JSONErrors: with --output json an error is one JSON object with
// a machine-readable code.
func TestMain_JSONErrors(t *testing.T) {
	var out, errb bytes.Buffer
	code := MainContext(context.Background(), []string{"-o", "json", "--data-dir", t.TempDir(), "tenant", "list"}, &out, &errb)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(errb.Bytes(), &e); err != nil || e.Code != "usage" || e.Error == "" {
		t.Fatalf("stderr %q: want one JSON object with code usage (%v)", errb.String(), err)
	}
}

// TestMain_HeaderKey: `tenantry header-key` prints the keys the gateway and a
// stack's instances are given.
func TestMain_HeaderKey(t *testing.T) {
	t.Setenv("TENANTRY_SECRET", "the-platform-secret")
	root := tenantsig.RootKey([]byte("the-platform-secret"))
	for _, tc := range []struct {
		args []string
		want []byte
	}{
		{[]string{"header-key"}, root},
		{[]string{"header-key", "shared"}, tenantsig.StackKey(root, "shared")},
	} {
		var out, errb bytes.Buffer
		if code := MainContext(context.Background(), tc.args, &out, &errb); code != exitOK {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errb.String())
		}
		if got := strings.TrimSpace(out.String()); got != hex.EncodeToString(tc.want) {
			t.Errorf("%v printed %q", tc.args, got)
		}
	}
}
