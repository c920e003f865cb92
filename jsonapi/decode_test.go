package jsonapi_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"tenantry/jsonapi"
)

type line struct {
	ProductID int64 `json:"product_id"`
	Quantity  int64 `json:"quantity"`
}

type base struct {
	Note string `json:"note,omitempty"`
}

type order struct {
	base
	CustomerID *int64            `json:"customer_id"`
	LocationID int64             `json:"location_id"`
	Lines      []line            `json:"lines"`
	Labels     map[string]string `json:"labels,omitempty"`
	Extra      json.RawMessage   `json:"extra,omitempty"`
	At         *time.Time        `json:"at,omitempty"`
	Any        any               `json:"any,omitempty"`
	Skipped    string            `json:"-"`
	Plain      string
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       error // nil: accepted
		path       string
	}{
		{"valid", `{"location_id":1,"lines":[{"product_id":2,"quantity":3}]}`, nil, ""},
		{"embedded field", `{"location_id":1,"note":"n"}`, nil, ""},
		{"untagged field by its Go name", `{"Plain":"p"}`, nil, ""},
		{"map keys are free", `{"labels":{"A":"1","a":"2"}}`, nil, ""},
		{"raw message keys are free", `{"extra":{"Whatever":1}}`, nil, ""},
		{"any keys are free", `{"any":{"X":{"Y":1}}}`, nil, ""},
		{"escaped key", `{"location_\u0069d":1}`, nil, ""},
		{"surrogate pair", `{"note":"\ud83d\ude00"}`, nil, ""},
		{"literal U+FFFD", `{"note":"\ufffd �"}`, nil, ""},
		{"time", `{"at":"2026-01-02T03:04:05Z"}`, nil, ""},

		{"case-insensitive field", `{"LOCATION_ID":1,"LINES":[]}`, jsonapi.ErrUnknownField, "LOCATION_ID"},
		{"case-insensitive nested field", `{"lines":[{"Product_ID":1}]}`, jsonapi.ErrUnknownField, "lines[0].Product_ID"},
		{"case-insensitive embedded field", `{"Note":"n"}`, jsonapi.ErrUnknownField, "Note"},
		{"unknown field", `{"price":1}`, jsonapi.ErrUnknownField, "price"},
		{"ignored field", `{"Skipped":"x"}`, jsonapi.ErrUnknownField, "Skipped"},
		{"duplicate key", `{"location_id":1,"location_id":2}`, jsonapi.ErrDuplicateKey, "location_id"},
		{"duplicate key by escape", `{"location_id":1,"location_\u0069d":2}`, jsonapi.ErrDuplicateKey, "location_id"},
		{"duplicate nested key", `{"lines":[{"quantity":1,"quantity":2}]}`, jsonapi.ErrDuplicateKey, "lines[0].quantity"},
		{"duplicate map key", `{"labels":{"a":"1","a":"2"}}`, jsonapi.ErrDuplicateKey, "labels.a"},
		{"duplicate key under any", `{"any":{"x":1,"x":2}}`, jsonapi.ErrDuplicateKey, "any.x"},
		{"invalid UTF-8 in a value", "{\"note\":\"x\xffy\"}", jsonapi.ErrInvalidUTF8, ""},
		{"invalid UTF-8 in a key", "{\"no\xc3te\":\"x\"}", jsonapi.ErrInvalidUTF8, ""},
		{"lone high surrogate", `{"note":"\ud800x"}`, jsonapi.ErrInvalidUTF8, ""},
		{"lone low surrogate", `{"note":"\udc00"}`, jsonapi.ErrInvalidUTF8, ""},
		{"reversed surrogates", `{"note":"\ude00\ud83d"}`, jsonapi.ErrInvalidUTF8, ""},
		{"wrong type", `{"location_id":"1"}`, jsonapi.ErrType, "location_id"},
		{"empty", ``, jsonapi.ErrSyntax, ""},
		{"truncated", `{"location_id":`, jsonapi.ErrSyntax, ""},
		{"two values", `{} {}`, jsonapi.ErrSyntax, ""},
		{"trailing garbage", `{}x`, jsonapi.ErrSyntax, ""},
		{"too deep", `{"any":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, jsonapi.ErrSyntax, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o order
			err := jsonapi.Decode([]byte(tc.body), &o)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Decode(%s) = %v, want success", tc.body, err)
				}
				var std order
				if err := json.Unmarshal([]byte(tc.body), &std); err != nil || !reflect.DeepEqual(o, std) {
					t.Fatalf("Decode gave %+v, encoding/json %+v (%v)", o, std, err)
				}
				return
			}
			var de *jsonapi.DecodeError
			if !errors.Is(err, tc.want) || !errors.As(err, &de) {
				t.Fatalf("Decode(%.80s) = %v, want %v", tc.body, err, tc.want)
			}
			if de.Path != tc.path {
				t.Errorf("error path %q, want %q (%v)", de.Path, tc.path, err)
			}
		})
	}
}

func TestDecode_CaseHint(t *testing.T) {
	var o order
	err := jsonapi.Decode([]byte(`{"Location_Id":1}`), &o)
	if err == nil || !strings.Contains(err.Error(), `did you mean "location_id"`) {
		t.Fatalf("err = %v, want a hint naming location_id", err)
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts is valid UTF-8,
// valid JSON, and decodes to the same value with encoding/json (it only
// refuses more, never reads differently). The seed corpus is in
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"location_id":1,"lines":[{"product_id":2,"quantity":3}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var o order
		if err := jsonapi.Decode(data, &o); err != nil {
			var de *jsonapi.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		if !utf8.Valid(data) || !json.Valid(data) {
			t.Fatalf("accepted invalid text %q", data)
		}
		var std order
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("accepted %q that encoding/json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(o, std) {
			t.Fatalf("%q decoded to %+v, encoding/json %+v", data, o, std)
		}
	})
}
