package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestMain_TenantKeys: `tenant key create|list|revoke` through a real
// control API, and `tenant delete` asks for --yes before it calls it.
func TestMain_TenantKeys(t *testing.T) {
	t.Setenv("TENANTRY_TOKEN", "adm_cli") // secrets never in flag values
	api := guardAPI(t)
	t.Setenv("TENANTRY_TOKEN", "adm_cli")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := MainContext(context.Background(), append([]string{"--api", api}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := run("--output", "json", "tenant", "key", "create", "acme")
	var k struct {
		KeyID  string `json:"key_id"`
		APIKey string `json:"api_key"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &k) != nil || k.KeyID == "" || !strings.HasPrefix(k.APIKey, "tk_") {
		t.Fatalf("key create: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs = run("tenant", "key", "list", "acme"); code != exitOK || !strings.Contains(out, k.KeyID) {
		t.Fatalf("key list: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs = run("tenant", "key", "revoke", "acme", k.KeyID); code != exitOK || !strings.Contains(out, "revoked") {
		t.Fatalf("key revoke: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs = run("tenant", "key", "revoke", "acme", k.KeyID); code != exitFailure || !strings.Contains(errs, "not_found") {
		t.Fatalf("key revoke again: exit %d, %q, want 1 not_found", code, errs)
	}
	if code, _, errs = run("tenant", "key", "revoke", "acme", "x'y"); code != exitUsage || !strings.Contains(errs, "invalid_request") {
		t.Fatalf("key revoke of a bad id: exit %d, %q, want 2 invalid_request", code, errs)
	}
	if code, out, _ = run("tenant", "key", "list", "acme"); code != exitOK || strings.Count(out, k.KeyID) != 1 || !strings.Contains(out, "REVOKED") {
		t.Fatalf("key list after revoke: %q", out)
	}
	if code, _, errs = run("tenant", "delete", "acme"); code != exitUsage || !strings.Contains(errs, "--yes") {
		t.Fatalf("tenant delete without --yes: exit %d, %q, want 2 asking for --yes", code, errs)
	}
}

// TestMain_TenantLimits: `tenant limits` sets a tenant's limits through a
// real control API; an unknown tenant is exit 1 with not_found.
func TestMain_TenantLimits(t *testing.T) {
	t.Setenv("TENANTRY_TOKEN", "adm_cli")
	api := guardAPI(t)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := MainContext(context.Background(), append([]string{"--api", api}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := run("tenant", "limits", "acme", "--rate", "5", "--concurrency", "2"); code != exitOK || !strings.Contains(out, "rate 5/s, concurrency 2 in flight") {
		t.Fatalf("limits: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := run("-o", "json", "tenant", "limits", "acme"); code != exitOK || !strings.Contains(out, `"rate": 0`) {
		t.Fatalf("limits back to the defaults: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := run("tenant", "limits", "nobody", "--rate", "1"); code != exitFailure || !strings.Contains(errs, "not found") {
		t.Fatalf("unknown tenant: exit %d, %q", code, errs)
	}
}
