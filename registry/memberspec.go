package registry

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseMemberSpec parses a member as operators write it on the command line:
// NAME=HOST:PORT[,role=primary|standby][,zone=Z]. The role is empty when not
// given (the caller decides); the name, zone and port are validated, so a
// member that parses is one the registry accepts. Errors wrap ErrInvalid.
func ParseMemberSpec(s string) (Member, error) {
	head, opts, hasOpts := strings.Cut(s, ",")
	name, addr, ok := strings.Cut(head, "=")
	if !ok {
		return Member{}, fmt.Errorf("%w: member %q: want NAME=HOST:PORT[,role=primary|standby][,zone=Z]", ErrInvalid, s)
	}
	if err := ValidateName("member", name); err != nil {
		return Member{}, err
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return Member{}, fmt.Errorf("%w: member %q: address %q: want HOST:PORT", ErrInvalid, name, addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 || portText != strconv.Itoa(port) {
		return Member{}, fmt.Errorf("%w: member %q: port %q is not 1 to 65535", ErrInvalid, name, portText)
	}
	m := Member{Name: name, Host: host, Port: port}
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(opts, ",") {
		if !hasOpts {
			break
		}
		k, v, _ := strings.Cut(kv, "=")
		if seen[k] {
			return Member{}, fmt.Errorf("%w: member %q: %s given twice", ErrInvalid, name, k)
		}
		seen[k] = true
		switch k {
		case "role":
			if v != string(RolePrimary) && v != string(RoleStandby) {
				return Member{}, fmt.Errorf("%w: member %q: role %q (want primary or standby)", ErrInvalid, name, v)
			}
			m.Role = Role(v)
		case "zone":
			if err := ValidateName("zone", v); err != nil {
				return Member{}, err
			}
			m.Zone = v
		default:
			return Member{}, fmt.Errorf("%w: member %q: unknown option %q (want role= or zone=)", ErrInvalid, name, k)
		}
	}
	return m, nil
}
