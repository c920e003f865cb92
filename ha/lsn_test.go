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
