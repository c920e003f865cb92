package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// ParseTarget parses "TENANT=KEY". The tenant id is checked by
// Config.Validate, not here.
func ParseTarget(s string) (Target, error) {
	t, key, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok || t == "" || key == "" {
		return Target{}, fmt.Errorf("%w: target %q: want TENANT=KEY", ErrInvalidConfig, s)
	}
	return Target{Tenant: t, APIKey: key}, nil
}

// ReadTargets reads a targets file: a JSON array of {"tenant","api_key"}
// objects, or TENANT=KEY lines (blank lines and lines starting with # are
// skipped).
func ReadTargets(r io.Reader) ([]Target, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var out []Target
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, fmt.Errorf("%w: targets: %v", ErrInvalidConfig, err)
		}
		return out, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			t, err := ParseTarget(line)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
	}
	return out, sc.Err()
}
