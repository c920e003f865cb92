package instance

import (
	"testing"

	"tenantry/provision"
)

// TestConfig_credentials: a shared stack's instance derives every tenant's
// password from the tenant key; a dedicated stack's instance knows only its
// tenants' passwords and has none for any other tenant.
func TestConfig_credentials(t *testing.T) {
	secret := []byte("platform secret")
	shared := Config{TenantKey: provision.TenantKey(secret)}
	for _, tn := range []string{"acme", "globex"} {
		if user, pw := shared.credentials(tn); user != provision.RoleName(tn) || pw != provision.Password(secret, tn) {
			t.Errorf("shared %s: %s/%s, want the role and its derived password", tn, user, pw)
		}
	}
	dedicated := Config{TenantPasswords: map[string]string{"acme": provision.Password(secret, "acme")}}
	if _, pw := dedicated.credentials("acme"); pw != provision.Password(secret, "acme") {
		t.Errorf("dedicated acme: password %q", pw)
	}
	if _, pw := dedicated.credentials("globex"); pw != "" {
		t.Errorf("dedicated instance has a password for another tenant: %q", pw)
	}
}
