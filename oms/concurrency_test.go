package oms_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"

	"tenantry/oms"
)

func TestServer_Idempotency(t *testing.T) {
	e := newEnv(t)
	key := func(k string) []string { return []string{oms.HeaderIdempotencyKey, k} }
	body := map[string]any{"sku": "idem", "name": "Idempotent"}

	first := e.must(201, "acme", "POST", "/v1/products", body, key("k1")...)
	if first.header.Get(oms.HeaderReplayed) != "" {
		t.Fatal("first response marked replayed")
	}
	before := e.counts()
	again := e.must(201, "acme", "POST", "/v1/products", body, key("k1")...)
	if again.header.Get(oms.HeaderReplayed) != "true" || string(again.raw) != string(first.raw) {
		t.Fatalf("replay: %v %s, first %s", again.header, again.raw, first.raw)
	}
	if after := e.counts(); !maps.Equal(before, after) {
		t.Fatalf("replay wrote rows: %v -> %v", before, after)
	}

	t.Run("same key, other body", func(t *testing.T) {
		r := e.must(422, "acme", "POST", "/v1/products", map[string]any{"sku": "other", "name": "Other"}, key("k1")...)
		if r.code() != "idempotency_key_reused" {
			t.Fatalf("%s", r.raw)
		}
	})
	t.Run("same key, other path", func(t *testing.T) {
		r := e.must(422, "acme", "POST", "/v1/locations", map[string]any{"code": "idem", "name": "Idempotent"}, key("k1")...)
		if r.code() != "idempotency_key_reused" {
			t.Fatalf("%s", r.raw)
		}
	})
	t.Run("keys are per tenant", func(t *testing.T) {
		r := e.must(201, "globex", "POST", "/v1/products", body, key("k1")...)
		if r.header.Get(oms.HeaderReplayed) != "" || r.id() == first.id() {
			t.Fatalf("globex got acme's stored response: %s", r.raw)
		}
	})
	t.Run("errors are not stored", func(t *testing.T) {
		// A duplicate sku fails and leaves the key free for a retry that succeeds.
		e.must(409, "acme", "POST", "/v1/products", body, key("k2")...)
		e.must(409, "acme", "POST", "/v1/products", body, key("k2")...)
		e.must(422, "acme", "POST", "/v1/products", map[string]any{"sku": "idem2", "name": "X"}, key("k1")...)
		r := e.must(201, "acme", "POST", "/v1/products", map[string]any{"sku": "idem2", "name": "X"}, key("k2")...)
		if r.header.Get(oms.HeaderReplayed) != "" {
			t.Fatal("a failed request's key was stored")
		}
	})

	t.Run("concurrent identical orders reserve once", func(t *testing.T) {
		p, loc := e.stocked("acme", "conc", 1000)
		order := map[string]any{"location_id": loc, "lines": []any{map[string]any{"product_id": p, "quantity": 7}}}
		const n = 8
		resps := make([]response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resps[i] = e.call("acme", "POST", "/v1/orders", order, key("order-1")...)
			}()
		}
		wg.Wait()
		replays := 0
		for _, r := range resps {
			if r.status != 201 || string(r.raw) != string(resps[0].raw) {
				t.Fatalf("responses differ: %d %s vs %s", r.status, r.raw, resps[0].raw)
			}
			if r.header.Get(oms.HeaderReplayed) == "true" {
				replays++
			}
		}
		if replays != n-1 {
			t.Fatalf("%d replays of %d identical requests, want %d", replays, n, n-1)
		}
		if pos := e.position("acme", p, loc); pos != [3]int64{993, 7, 0} {
			t.Fatalf("position %v, want one reservation of 7", pos)
		}
		f1 := e.must(200, "acme", "POST", fmt.Sprintf("/v1/orders/%d/fulfil", resps[0].id()), nil, key("fulfil-1")...)
		f2 := e.must(200, "acme", "POST", fmt.Sprintf("/v1/orders/%d/fulfil", resps[0].id()), nil, key("fulfil-1")...)
		if string(f1.raw) != string(f2.raw) || f2.header.Get(oms.HeaderReplayed) != "true" {
			t.Fatalf("fulfil replay: %s vs %s", f1.raw, f2.raw)
		}
	})
}

// TestServer_Conservation drives a concurrent mix of orders, fulfils,
// cancels, receipts and stock sets from several goroutines over a few hot
// positions, then checks that no request failed unexpectedly and the stock
// ledger is exact.
func TestServer_Conservation(t *testing.T) {
	e := newEnv(t)
	var products []int64
	p, loc := e.stocked("acme", "c0", 50)
	products = append(products, p)
	for i := 1; i < 4; i++ {
		q := e.must(201, "acme", "POST", "/v1/products", map[string]any{"sku": fmt.Sprintf("c%d", i), "name": "C"}).id()
		e.must(200, "acme", "PUT", pathf("/v1/inventory/%d/%d", q, loc), map[string]any{"on_hand": 50})
		products = append(products, q)
	}
	const workers, steps = 6, 40
	var wg sync.WaitGroup
	errs := make(chan string, workers*steps)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []int64
			for range steps {
				switch k := rng.IntN(10); {
				case k < 5 || len(mine) == 0:
					perm := rng.Perm(len(products))[:1+rng.IntN(len(products))]
					var lines []any
					for _, i := range perm {
						lines = append(lines, map[string]any{"product_id": products[i], "quantity": 1 + rng.IntN(5)})
					}
					r := e.call("acme", "POST", "/v1/orders", map[string]any{"location_id": loc, "lines": lines})
					switch {
					case r.status == 201:
						mine = append(mine, r.id())
					case r.code() != "insufficient_stock":
						errs <- fmt.Sprintf("order: %d %s", r.status, r.raw)
					}
				case k < 7:
					id := mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					if r := e.call("acme", "POST", pathf("/v1/orders/%d/fulfil", id), nil); r.status != 200 {
						errs <- fmt.Sprintf("fulfil: %d %s", r.status, r.raw)
					}
				case k < 9:
					id := mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					if r := e.call("acme", "POST", pathf("/v1/orders/%d/cancel", id), nil); r.status != 200 {
						errs <- fmt.Sprintf("cancel: %d %s", r.status, r.raw)
					}
				default:
					prod := products[rng.IntN(len(products))]
					r := e.call("acme", "POST", pathf("/v1/inventory/%d/%d/receipts", prod, loc), map[string]any{"quantity": 5})
					if rng.IntN(2) == 0 {
						r = e.call("acme", "PUT", pathf("/v1/inventory/%d/%d", prod, loc), map[string]any{"on_hand": rng.IntN(60)})
					}
					if r.status != 200 {
						errs <- fmt.Sprintf("stock: %d %s", r.status, r.raw)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	e.checkLedger()
	var reservedByOrders, reservedInStock int64
	if err := e.pool.QueryRow(t.Context(), `SELECT
	(SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o ON o.tenant_id = l.tenant_id AND o.id = l.order_id WHERE o.status = 'reserved'),
	(SELECT coalesce(sum(reserved), 0) FROM inventory)`).Scan(&reservedByOrders, &reservedInStock); err != nil {
		t.Fatal(err)
	}
	if reservedByOrders != reservedInStock {
		t.Fatalf("reserved orders hold %d, inventory says %d reserved", reservedByOrders, reservedInStock)
	}
}
