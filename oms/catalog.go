package oms

import (
	"context"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Products, locations and customers share one shape: an id, a key field
// (sku, code, email) and a name. catalog describes the table behind each;
// its strings are constants of this file, never input.
type catalog struct {
	what   string // for messages: "product"
	table  string // "products"
	key    string // the key column and JSON field: "sku"
	unique bool   // the key is unique per tenant (409 conflict on a duplicate)
}

var (
	products  = catalog{what: "product", table: "products", key: "sku", unique: true}
	locations = catalog{what: "location", table: "locations", key: "code", unique: true}
	customers = catalog{what: "customer", table: "customers", key: "email"}
)

// Field limits.
const (
	maxKeyLen  = 100
	maxNameLen = 200
)

type productIn struct {
	SKU  string `json:"sku"`
	Name string `json:"name"`
}

type locationIn struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

type customerIn struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

func (s *Server) createProduct(w http.ResponseWriter, r *request) error {
	var in productIn
	body, err := readBody(w, r, &in)
	if err != nil {
		return err
	}
	return s.createCatalog(w, r, body, products, in.SKU, in.Name)
}

func (s *Server) createLocation(w http.ResponseWriter, r *request) error {
	var in locationIn
	body, err := readBody(w, r, &in)
	if err != nil {
		return err
	}
	return s.createCatalog(w, r, body, locations, in.Code, in.Name)
}

func (s *Server) createCustomer(w http.ResponseWriter, r *request) error {
	var in customerIn
	body, err := readBody(w, r, &in)
	if err != nil {
		return err
	}
	if err := checkText("email", in.Email, maxKeyLen); err != nil {
		return err
	}
	if at := strings.IndexByte(in.Email, '@'); at <= 0 || at == len(in.Email)-1 || strings.ContainsAny(in.Email, " \t") {
		return invalid("email %q is not an address", in.Email)
	}
	return s.createCatalog(w, r, body, customers, in.Email, in.Name)
}

func (s *Server) getProduct(w http.ResponseWriter, r *request) error {
	return s.getCatalog(w, r, products)
}
func (s *Server) getLocation(w http.ResponseWriter, r *request) error {
	return s.getCatalog(w, r, locations)
}
func (s *Server) getCustomer(w http.ResponseWriter, r *request) error {
	return s.getCatalog(w, r, customers)
}

func (s *Server) createCatalog(w http.ResponseWriter, r *request, body []byte, c catalog, key, name string) error {
	if err := checkText(c.key, key, maxKeyLen); err != nil {
		return err
	}
	if err := checkText("name", name, maxNameLen); err != nil {
		return err
	}
	q := "INSERT INTO " + pgx.Identifier{c.table}.Sanitize() + " (tenant_id, " + pgx.Identifier{c.key}.Sanitize() +
		", name) VALUES ($1, $2, $3)"
	if c.unique {
		q += " ON CONFLICT DO NOTHING"
	}
	q += " RETURNING id"
	return s.write(w, r, body, func(ctx context.Context, tx pgx.Tx) (int, any, error) {
		var id int64
		if err := tx.QueryRow(ctx, q, r.tenant, key, name).Scan(&id); err != nil {
			if errNoRows(err) {
				return 0, nil, apiErr(CodeConflict, "%s with %s %q already exists", c.what, c.key, key)
			}
			return 0, nil, err
		}
		return http.StatusCreated, map[string]any{"id": id, c.key: key, "name": name}, nil
	})
}

func (s *Server) getCatalog(w http.ResponseWriter, r *request, c catalog) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	q := "SELECT " + pgx.Identifier{c.key}.Sanitize() + ", name FROM " + pgx.Identifier{c.table}.Sanitize() +
		" WHERE tenant_id = $1 AND id = $2"
	return s.read(w, r, func(ctx context.Context, tx pgx.Tx) (any, error) {
		var key, name string
		if err := tx.QueryRow(ctx, q, r.tenant, id).Scan(&key, &name); err != nil {
			if errNoRows(err) {
				return nil, notFound(c.what, id)
			}
			return nil, err
		}
		return map[string]any{"id": id, c.key: key, "name": name}, nil
	})
}

// checkText requires a non-blank, valid UTF-8 string of at most max
// characters without control characters (PostgreSQL rejects NUL in text).
func checkText(field, v string, max int) error {
	switch {
	case strings.TrimSpace(v) == "":
		return invalid("%s is required", field)
	case !utf8.ValidString(v):
		return invalid("%s must be valid UTF-8", field)
	case utf8.RuneCountInString(v) > max:
		return invalid("%s must be at most %d characters", field, max)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return invalid("%s must not contain control characters", field)
	}
	return nil
}
