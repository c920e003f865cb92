package oms

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// requestChecks decode a request body the way one endpoint does and runs its
// checks that need no database.
var requestChecks = []struct {
	name  string
	check func(body []byte) (any, error)
}{
	{"order", func(b []byte) (any, error) {
		var in orderIn
		if err := decodeStrict(b, &in); err != nil {
			return nil, err
		}
		return &in, in.validate()
	}},
	{"product", func(b []byte) (any, error) {
		var in productIn
		if err := decodeStrict(b, &in); err != nil {
			return nil, err
		}
		if err := checkText("sku", in.SKU, maxKeyLen); err != nil {
			return nil, err
		}
		return &in, checkText("name", in.Name, maxNameLen)
	}},
	{"customer", func(b []byte) (any, error) {
		var in customerIn
		if err := decodeStrict(b, &in); err != nil {
			return nil, err
		}
		if err := checkText("email", in.Email, maxKeyLen); err != nil {
			return nil, err
		}
		return &in, checkText("name", in.Name, maxNameLen)
	}},
	{"inventory", func(b []byte) (any, error) {
		var in setInventoryIn
		return &in, decodeStrict(b, &in)
	}},
	{"receipt", func(b []byte) (any, error) {
		var in receiptIn
		return &in, decodeStrict(b, &in)
	}},
}

// FuzzDecodeRequest: the OMS's request decoders and checks never panic; a
// body they refuse is a 4xx *Error with a stable code (never a 500); an
// order they accept holds what the API promises (1 to MaxOrderLines lines,
// positive ids, quantities in range, each product once) and texts they
// accept are valid UTF-8 within their limits. Seeds in
// testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(uint8(0), []byte(`{"location_id":1,"lines":[{"product_id":2,"quantity":3}]}`))
	f.Add(uint8(1), []byte(`{"sku":"a","name":"A"}`))
	f.Add(uint8(2), []byte(`{"email":"a@example.com","name":"A"}`))
	f.Add(uint8(3), []byte(`{"on_hand":5}`))
	f.Add(uint8(4), []byte(`{"quantity":5}`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		rc := requestChecks[int(which)%len(requestChecks)]
		v, err := rc.check(body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" || e.Status() < 400 || e.Status() > 499 {
				t.Fatalf("%s %q: refused with %v (%T), want a 4xx *Error", rc.name, body, err, err)
			}
			return
		}
		switch in := v.(type) {
		case *orderIn:
			if in.LocationID <= 0 || len(in.Lines) < 1 || len(in.Lines) > MaxOrderLines {
				t.Fatalf("accepted order %+v", in)
			}
			seen := map[int64]bool{}
			for _, l := range in.Lines {
				if l.ProductID <= 0 || l.Quantity < 1 || l.Quantity > MaxLineQuantity || seen[l.ProductID] {
					t.Fatalf("accepted order line %+v of %+v", l, in)
				}
				seen[l.ProductID] = true
			}
		case *productIn:
			textOK(t, in.SKU, maxKeyLen)
			textOK(t, in.Name, maxNameLen)
		case *customerIn:
			textOK(t, in.Email, maxKeyLen)
			textOK(t, in.Name, maxNameLen)
		}
	})
}

func textOK(t *testing.T, s string, max int) {
	t.Helper()
	if !utf8.ValidString(s) || strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > max || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		t.Fatalf("accepted text %q (limit %d)", s, max)
	}
}
