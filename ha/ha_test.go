package ha

import "testing"

func TestParseLSN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{in: "0/0", want: 0},
		{in: "0/349F9E0", want: 0x349F9E0},
		{in: "16/B374D848", want: 0x16<<32 | 0xB374D848},
		{in: "FFFFFFFF/FFFFFFFF", want: 1<<64 - 1},
		{in: "", bad: true},
		{in: "12", bad: true},
		{in: "1/2/3", bad: true},
		{in: "G/0", bad: true},
		{in: "100000000/0", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseLSN(tc.in)
			if tc.bad != (err != nil) || got != tc.want {
				t.Fatalf("parseLSN(%q) = %#x, %v; want %#x, error %v", tc.in, got, err, tc.want, tc.bad)
			}
		})
	}
}

func TestValidateSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]string
		ok   bool
	}{
		{"one", map[string]string{"shared_buffers": "144MB"}, true},
		{"dotted", map[string]string{"auto_explain.log_min_duration": "1s"}, true},
		{"quote in value", map[string]string{"application_name": "it's"}, true},
		{"none", nil, false},
		{"upper case name", map[string]string{"Work_mem": "1MB"}, false},
		{"newline in value", map[string]string{"work_mem": "1MB\nfsync = off"}, false},
		{"name with space", map[string]string{"work mem": "1MB"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := validateSettings(tc.in); (err == nil) != tc.ok {
				t.Fatalf("validateSettings(%q) = %v, want ok %v", tc.in, err, tc.ok)
			}
		})
	}
	if got := quoted(map[string]string{"application_name": "it's"})["application_name"]; got != "'it''s'" {
		t.Errorf("quoted value %s, want 'it''s'", got)
	}
}
