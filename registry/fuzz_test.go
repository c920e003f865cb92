package registry_test

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"tenantry/provision"
	"tenantry/registry"
)

// maxIdentifier is PostgreSQL's longest identifier (NAMEDATALEN - 1): a
// longer one is silently truncated, so two names that differ only past it
// would name the same role or database.
const maxIdentifier = 63

// nameOK is the rule of names, written out byte by byte instead of as the
// validator's regular expression: a lowercase letter, then up to 62 of
// lowercase letters, digits, '_' and '-' (tenants: no '_', at least one
// more, and a role name "t_"+id that fits an identifier).
func nameOK(s string, tenant bool) bool {
	max := maxIdentifier
	if tenant {
		max = maxIdentifier - len("t_")
	}
	if len(s) == 0 || len(s) > max || s[0] < 'a' || s[0] > 'z' || (tenant && len(s) < 2) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' && !tenant) {
			return false
		}
	}
	return true
}

// FuzzValidateName: the name validators accept exactly the documented names,
// refuse everything else with ErrInvalid, and what they accept is safe to
// put in SQL: quoting adds nothing but the quotes, and it fits PostgreSQL's
// identifiers untruncated (for a tenant, as its role name too). Seeds in
// testdata/fuzz/FuzzValidateName.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"acme", "pool-1", "a", "default", "a_b", "A", "1abc", "acme\"; drop", "", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tc := range []struct {
			tenant bool
			err    error
		}{{false, registry.ValidateName("alias", s)}, {true, registry.ValidateTenantID(s)}} {
			if want := nameOK(s, tc.tenant); (tc.err == nil) != want {
				t.Fatalf("%q (tenant %v): validator says %v, the rule says valid=%v", s, tc.tenant, tc.err, want)
			}
			if tc.err != nil {
				if !errors.Is(tc.err, registry.ErrInvalid) {
					t.Fatalf("%q: error %v does not wrap ErrInvalid", s, tc.err)
				}
				continue
			}
			if q := (pgx.Identifier{s}).Sanitize(); q != `"`+s+`"` {
				t.Fatalf("accepted %q quotes as %s", s, q)
			}
			if tc.tenant && len(provision.RoleName(s)) > maxIdentifier {
				t.Fatalf("accepted tenant %q has role name %q, longer than PostgreSQL keeps", s, provision.RoleName(s))
			}
		}
	})
}
