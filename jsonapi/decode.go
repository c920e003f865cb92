// Package jsonapi holds the JSON conventions every tenantry HTTP server (the
// OMS, the gateway, the control API) shares: strict decoding of request
// bodies (Decode), the error body {"error":{"code","message"}} (WriteError),
// and JSON answers where net/http would answer by itself in text or HTML
// (CanonicalPath, Unmatched, Listener). Package httpedge, the servers'
// timeouts and limits, serves through Listener.
package jsonapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// Reasons a body is refused. A decode error is a *DecodeError wrapping one
// of them; errors.Is sees it.
var (
	// ErrSyntax: not one well-formed JSON value (empty, malformed, or
	// followed by more data).
	ErrSyntax = errors.New("malformed JSON")
	// ErrInvalidUTF8: the body is not valid UTF-8, or a \u escape names a
	// lone surrogate. encoding/json would silently store U+FFFD instead.
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrDuplicateKey: an object names a key twice. encoding/json keeps the
	// last, so the value the server acts on may not be the one a checking
	// proxy saw.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrUnknownField: an object key names no field of the target struct,
	// including a key that differs from a field only by case
	// (encoding/json matches case-insensitively).
	ErrUnknownField = errors.New("unknown field")
	// ErrType: a value has the wrong JSON type for its field.
	ErrType = errors.New("wrong type")
)

// DecodeError says why and where a body was refused. Path is the JSON path
// of the offending value ("lines[0].quantity"), empty for the whole body.
type DecodeError struct {
	Err    error
	Path   string
	Detail string
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if e.Path != "" {
		fmt.Fprintf(&b, " at %s", e.Path)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode decodes data, which must be exactly one JSON value, into v (a
// non-nil pointer). Beyond encoding/json it refuses what that package lets
// through silently: invalid UTF-8 and lone surrogate escapes, duplicate
// object keys, and keys that match a struct field only case-insensitively;
// unknown fields are refused too. Keys of maps and of values whose type
// decodes itself (json.Unmarshaler, encoding.TextUnmarshaler, any) are
// checked for duplicates only. On error v may be partly filled; callers
// discard it.
func Decode(data []byte, v any) error {
	if err := checkText(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := walker{dec: dec}
	if err := w.value(reflect.TypeOf(v)); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return &DecodeError{Err: ErrSyntax, Detail: "more data after the JSON value"}
	}
	strict := json.NewDecoder(bytes.NewReader(data))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &DecodeError{Err: ErrType, Path: te.Field, Detail: "must be " + jsonKind(te.Type)}
		}
		// Anything else was caught by the walk; keep the cause visible.
		return &DecodeError{Err: ErrSyntax, Detail: err.Error()}
	}
	return nil
}

// jsonKind names the JSON a Go type is decoded from, for messages.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// checkText refuses invalid UTF-8 and \u escapes that name lone surrogates.
// It does not check JSON syntax (the walk does); outside strings it only
// tracks quotes.
func checkText(data []byte) error {
	if !utf8.Valid(data) {
		return &DecodeError{Err: ErrInvalidUTF8, Detail: fmt.Sprintf("at byte %d", invalidAt(data))}
	}
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '"':
			inString = !inString
		case inString && c == '\\' && i+1 < len(data):
			i++
			if data[i] != 'u' {
				continue
			}
			r, ok := hex4(data, i+1)
			if !ok {
				continue // malformed escape: the walk reports it
			}
			i += 4
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return &DecodeError{Err: ErrInvalidUTF8, Detail: fmt.Sprintf("lone low surrogate \\u%04x", r)}
			case r >= 0xD800 && r <= 0xDBFF:
				if i+2 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
					if lo, ok := hex4(data, i+3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						i += 6
						continue
					}
				}
				return &DecodeError{Err: ErrInvalidUTF8, Detail: fmt.Sprintf("lone high surrogate \\u%04x", r)}
			}
		}
	}
	return nil
}

func invalidAt(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(data)
}

// hex4 parses four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// walker reads the token stream of one JSON value alongside the Go type it
// will be decoded into. A nil type means "anything": only duplicate keys are
// checked below it. The path to the current value is kept as segments and
// rendered only for an error, so deep bodies cost no quadratic strings.
type walker struct {
	dec  *json.Decoder
	segs []segment
}

// segment is one step of a JSON path: an object key, or an array index when
// key is empty and index >= 0.
type segment struct {
	key   string
	index int
}

// maxDepth bounds nesting as encoding/json's scanner does, so that a body of
// a million '[' cannot recurse a million times.
const maxDepth = 10000

func (w *walker) path() string {
	var b strings.Builder
	for _, s := range w.segs {
		if s.index >= 0 {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

func (w *walker) token() (json.Token, error) {
	tok, err := w.dec.Token()
	if err == io.EOF {
		return nil, &DecodeError{Err: ErrSyntax, Detail: "the body is empty or ends early"}
	}
	if err != nil {
		return nil, &DecodeError{Err: ErrSyntax, Detail: err.Error()}
	}
	return tok, nil
}

func (w *walker) value(t reflect.Type) error {
	tok, err := w.token()
	if err != nil {
		return err
	}
	t = target(t)
	switch tok {
	case json.Delim('{'), json.Delim('['):
		if len(w.segs) >= maxDepth {
			return &DecodeError{Err: ErrSyntax, Detail: fmt.Sprintf("nested deeper than %d", maxDepth)}
		}
	}
	switch tok {
	case json.Delim('{'):
		return w.object(t)
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; w.dec.More(); i++ {
			w.segs = append(w.segs, segment{index: i})
			err := w.value(elem)
			w.segs = w.segs[:len(w.segs)-1]
			if err != nil {
				return err
			}
		}
		_, err := w.token() // ']'
		return err
	}
	return nil // a scalar: encoding/json checks its type
}

func (w *walker) object(t reflect.Type) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = structFields(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		w.segs = append(w.segs, segment{key: key, index: -1})
		if seen[key] {
			return &DecodeError{Err: ErrDuplicateKey, Path: w.path()}
		}
		seen[key] = true
		next := elem
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				return &DecodeError{Err: ErrUnknownField, Path: w.path(), Detail: hint(fields, key)}
			}
			next = ft
		}
		if err := w.value(next); err != nil {
			return err
		}
		w.segs = w.segs[:len(w.segs)-1]
	}
	_, err := w.token() // '}'
	return err
}

// hint names the field a key matches only case-insensitively.
func hint(fields map[string]reflect.Type, key string) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Sprintf("field names are case-sensitive; did you mean %q?", name)
		}
	}
	return ""
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// target is the type whose keys a JSON value is checked against: t without
// pointers, or nil when the value decodes itself or into an interface.
func target(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
			t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return nil
		}
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Interface:
			return nil
		default:
			return t
		}
	}
	return nil
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// structFields returns the JSON names encoding/json decodes into a struct
// type, with their types: tags, "-", unexported fields and embedded structs
// as encoding/json treats them. Where embedded structs name a field twice,
// the shallowest wins, as it does in encoding/json when unambiguous.
func structFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	depth := map[string]int{}
	var walk func(t reflect.Type, d int, visited map[reflect.Type]bool)
	walk = func(t reflect.Type, d int, visited map[reflect.Type]bool) {
		if visited[t] {
			return
		}
		visited[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					walk(et, d+1, visited)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if prev, ok := depth[name]; !ok || d < prev {
				out[name], depth[name] = ft, d
			}
		}
	}
	walk(t, 0, map[reflect.Type]bool{})
	fieldCache.Store(t, out)
	return out
}
