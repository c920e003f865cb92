package registry

import (
	"errors"
	"testing"
)

func TestParseMemberSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Member
		err  bool
	}{
		{in: "pg-a=db1.internal:5432", want: Member{Name: "pg-a", Host: "db1.internal", Port: 5432}},
		{in: "pg-b=10.0.0.2:5433,role=standby,zone=b", want: Member{Name: "pg-b", Host: "10.0.0.2", Port: 5433, Role: RoleStandby, Zone: "b"}},
		{in: "pg-c=[::1]:5432,role=primary", want: Member{Name: "pg-c", Host: "::1", Port: 5432, Role: RolePrimary}},
		{in: "pg-a", err: true},
		{in: "pg-a=db1", err: true},
		{in: "pg-a=:5432", err: true},
		{in: "pg-a=db1:0", err: true},
		{in: "pg-a=db1:65536", err: true},
		{in: "pg-a=db1:+5432", err: true},
		{in: "pg-a=db1:05432", err: true},
		{in: "Bad=db1:5432", err: true},
		{in: "pg-a=db1:5432,role=leader", err: true},
		{in: "pg-a=db1:5432,role=primary,role=standby", err: true},
		{in: "pg-a=db1:5432,zone=A;drop", err: true},
		{in: "pg-a=db1:5432,colour=blue", err: true},
		{in: "pg-a=db1:5432,", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMemberSpec(tc.in)
			if tc.err {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseMemberSpec(%q) = %+v, %v; want ErrInvalid", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMemberSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzParseMemberSpec: whatever parses is a member the registry accepts.
func FuzzParseMemberSpec(f *testing.F) {
	for _, s := range []string{"pg-a=db1:5432", "pg-b=10.0.0.2:5433,role=standby,zone=b", "x=[::1]:1,role=primary", "a=b", ",,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMemberSpec(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if ValidateName("member", m.Name) != nil || m.Port < 1 || m.Port > 65535 || m.Host == "" {
			t.Fatalf("accepted an invalid member %+v from %q", m, s)
		}
		if m.Zone != "" && ValidateName("zone", m.Zone) != nil {
			t.Fatalf("accepted an invalid zone %+v from %q", m, s)
		}
	})
}
