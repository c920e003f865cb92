package move

import (
	"context"

	"tenantry/logrepl"
	"tenantry/workflow"
)

// swapLinks, after a flip from -> to: stops the link from -> to, starts the
// link to -> from at the flip's LSN (so it never replays the copy back) and
// drops the old link. Idempotent.
func (m *Mover) swapLinks(ctx context.Context, r *workflow.Run, d *Data) error {
	f := d.Flip
	_, sides, err := m.open(ctx, f.From, f.To)
	if err != nil {
		return err
	}
	defer closeSides(sides)
	x, y := sides[0], sides[1]
	old, err := linkFor(r.ID, d, f.From, f.To)
	if err != nil {
		return err
	}
	back, err := linkFor(r.ID, d, f.To, f.From)
	if err != nil {
		return err
	}
	// The old subscription must stop before the link back applies anything
	// on `from`: PostgreSQL 15 would publish those changes again.
	if err := logrepl.DropLink(ctx, x.pool, y.pool, old.Link); err != nil {
		return err
	}
	lsn, err := logrepl.ParseLSN(f.FlipLSN)
	if err != nil {
		return err
	}
	if err := logrepl.StartReverse(ctx, x.pool, back.Link, y.ep, lsn); err != nil {
		return err
	}
	d.Link = &back
	d.Flip = nil
	return save(ctx, r, d)
}
