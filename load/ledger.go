package load

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Op names a write in the ledger.
type Op string

// Ops recorded in the ledger.
const (
	OpProduct    Op = "product"
	OpLocation   Op = "location"
	OpStock      Op = "stock"
	OpPlaceOrder Op = "place_order"
	OpFulfil     Op = "fulfil"
	OpCancel     Op = "cancel"
)

// Outcome says what the client knows about a write.
type Outcome string

const (
	// OutcomeAttempt is written before the first attempt is sent: from here
	// on the write may have applied even if it is never acknowledged.
	OutcomeAttempt Outcome = "attempt"
	// OutcomeAck: the service acknowledged the write (2xx).
	OutcomeAck Outcome = "ack"
	// OutcomeRefused: the service answered with a definite refusal (409
	// insufficient_stock, invalid_state): nothing was applied.
	OutcomeRefused Outcome = "refused"
	// OutcomeFailed: the write was given up (deadline, attempts, or an
	// unexpected status); it may or may not have applied.
	OutcomeFailed Outcome = "failed"
)

// Line is one order line.
type Line struct {
	ProductID int64 `json:"product_id"`
	Quantity  int64 `json:"quantity"`
}

// Record is one line of the ledger. Which fields are set depends on Op:
// product (ProductID, Name=sku), location (LocationID, Name=code), stock
// (ProductID, LocationID, OnHand), place_order (LocationID, Lines, and on
// ack OrderID and Status), fulfil and cancel (OrderID, and on ack Status).
type Record struct {
	Op         Op        `json:"op"`
	Outcome    Outcome   `json:"outcome"`
	Tenant     string    `json:"tenant"`
	Key        string    `json:"key,omitempty"`
	OrderID    int64     `json:"order_id,omitempty"`
	ProductID  int64     `json:"product_id,omitempty"`
	LocationID int64     `json:"location_id,omitempty"`
	Name       string    `json:"name,omitempty"`
	Lines      []Line    `json:"lines,omitempty"`
	OnHand     *int64    `json:"on_hand,omitempty"`
	Status     string    `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	At         time.Time `json:"at"`
}

// Ledger appends records as JSON Lines to a writer; it is safe for
// concurrent use. After the first write error every Write returns it.
type Ledger struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

// NewLedger returns a ledger writing to w.
func NewLedger(w io.Writer) *Ledger { return &Ledger{w: w} }

// Write appends r as one line.
func (l *Ledger) Write(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode ledger record: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("write ledger: %w", err)
	}
	return l.err
}

// ErrLedgerSyntax is returned (wrapped in a *LedgerError) for a line that
// is not a ledger record.
var ErrLedgerSyntax = errors.New("ledger syntax")

// LedgerError names the line of the ledger that could not be read.
type LedgerError struct {
	Line int
	Err  error
}

func (e *LedgerError) Error() string { return fmt.Sprintf("ledger line %d: %v", e.Line, e.Err) }
func (e *LedgerError) Unwrap() error { return e.Err }

// ReadLedger calls fn for every record of r in order. Empty lines are
// skipped; a line that does not parse is an error naming it.
func ReadLedger(r io.Reader, fn func(Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return &LedgerError{Line: n, Err: fmt.Errorf("%w: %v", ErrLedgerSyntax, err)}
		}
		if rec.Op == "" || rec.Outcome == "" || rec.Tenant == "" {
			return &LedgerError{Line: n, Err: fmt.Errorf("%w: op, outcome and tenant are required", ErrLedgerSyntax)}
		}
		if err := fn(rec); err != nil {
			return &LedgerError{Line: n, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read ledger: %w", err)
	}
	return nil
}
