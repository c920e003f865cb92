package registry

import (
	"fmt"
	"net/url"
	"regexp"
)

var hostRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,253}$`)

// ValidateRole checks that r is a known member role.
func ValidateRole(r Role) error {
	switch r {
	case RolePrimary, RoleStandby, RoleFenced:
		return nil
	}
	return fmt.Errorf("%w: member role %q (want primary, standby or fenced)", ErrInvalid, r)
}

// ValidateState checks that s is a known placement state.
func ValidateState(s State) error {
	switch s {
	case StateActive, StatePaused, StateFenced:
		return nil
	}
	return fmt.Errorf("%w: placement state %q (want active, paused or fenced)", ErrInvalid, s)
}

// Validate checks a member's name, host, port, zone and role.
func (m *Member) Validate() error {
	if err := ValidateName("member", m.Name); err != nil {
		return err
	}
	if !hostRe.MatchString(m.Host) {
		return fmt.Errorf("%w: member %s host %q", ErrInvalid, m.Name, m.Host)
	}
	if m.Port < 1 || m.Port > 65535 {
		return fmt.Errorf("%w: member %s port %d", ErrInvalid, m.Name, m.Port)
	}
	if m.Zone != "" {
		if err := ValidateName("zone", m.Zone); err != nil {
			return err
		}
	}
	return ValidateRole(m.Role)
}

// Validate checks the cluster's name and members: unique member names and at
// most one primary.
func (c *Cluster) Validate() error {
	if err := ValidateName("cluster", c.Name); err != nil {
		return err
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("%w: cluster %s: %v", ErrInvalid, c.Name, err)
	}
	seen := map[string]bool{}
	primaries := 0
	for i := range c.Members {
		m := &c.Members[i]
		if err := m.Validate(); err != nil {
			return err
		}
		if seen[m.Name] {
			return fmt.Errorf("%w: cluster %s lists member %s twice", ErrInvalid, c.Name, m.Name)
		}
		seen[m.Name] = true
		if m.Role == RolePrimary {
			primaries++
		}
	}
	if primaries > 1 {
		return fmt.Errorf("%w: cluster %s has %d primaries", ErrInvalid, c.Name, primaries)
	}
	return nil
}

// Validate checks the alias, cluster and database names.
func (a *Alias) Validate() error {
	if err := ValidateName("alias", a.Name); err != nil {
		return err
	}
	if err := ValidateName("cluster", a.Cluster); err != nil {
		return err
	}
	if a.Standbys < 0 {
		return fmt.Errorf("%w: alias %s wants %d standbys", ErrInvalid, a.Name, a.Standbys)
	}
	return ValidateName("database", a.Database)
}

// ValidateStackStatus checks that status is one of the Stack* statuses.
func ValidateStackStatus(status string) error {
	switch status {
	case StackDeploying, StackReady, StackStopped, StackFailed:
		return nil
	}
	return fmt.Errorf("%w: stack status %q", ErrInvalid, status)
}

// Validate checks the stack's name, status, version label and instance URLs.
func (s *Stack) Validate() error {
	if err := ValidateName("stack", s.Name); err != nil {
		return err
	}
	if err := ValidateStackStatus(s.Status); err != nil {
		return err
	}
	if len(s.Version) > 200 {
		return fmt.Errorf("%w: stack %s version label longer than 200 bytes", ErrInvalid, s.Name)
	}
	for _, in := range s.Instances {
		u, err := url.Parse(in.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: stack %s instance URL %q", ErrInvalid, s.Name, in.URL)
		}
	}
	return nil
}

// Validate checks the route's tenant (DefaultRoute or a tenant id) and
// backends: valid, distinct stack names, weights >= 0 summing to > 0.
func (r *Route) Validate() error {
	if r.Tenant != DefaultRoute {
		if err := ValidateTenantID(r.Tenant); err != nil {
			return err
		}
	}
	if len(r.Backends) == 0 {
		return fmt.Errorf("%w: route %q has no backends", ErrInvalid, r.Tenant)
	}
	seen := map[string]bool{}
	sum := 0
	for _, b := range r.Backends {
		if err := ValidateName("stack", b.Stack); err != nil {
			return err
		}
		if seen[b.Stack] {
			return fmt.Errorf("%w: route %q lists stack %s twice", ErrInvalid, r.Tenant, b.Stack)
		}
		seen[b.Stack] = true
		if b.Weight < 0 {
			return fmt.Errorf("%w: route %q weight %d of stack %s is negative", ErrInvalid, r.Tenant, b.Weight, b.Stack)
		}
		sum += b.Weight
	}
	if sum <= 0 {
		return fmt.Errorf("%w: route %q weights sum to %d", ErrInvalid, r.Tenant, sum)
	}
	return nil
}
