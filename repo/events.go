package repo

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/repo/db"
)

// Events is the repository of events, keyed by a bigint identity: the
// authoritative side assigns the id and the other side receives it.
type Events struct{ base }

var (
	opEventCreate = dualwrite.Op{Name: "events.create", OneStatement: true}
	opEventGet    = dualwrite.Op{Name: "events.get"}
	opEventList   = dualwrite.Op{Name: "events.list_by_user"}
	opEventUpdate = dualwrite.Op{Name: "events.update", OneStatement: true}
	opEventDelete = dualwrite.Op{Name: "events.delete", OneStatement: true}
)

// NewEvent is what Create needs. A nil Payload is stored as {}.
type NewEvent struct {
	UserID  uuid.UUID
	Kind    string
	Payload json.RawMessage
}

// Create inserts an event; its id comes from the authoritative side.
func (r *Events) Create(ctx context.Context, in NewEvent) (db.Event, error) {
	if in.Payload == nil {
		in.Payload = json.RawMessage(`{}`)
	}
	at := r.now()
	return dualwrite.Write(ctx, r.f, opEventCreate, func(ctx context.Context, tx *dualwrite.Tx, prev *db.Event) (db.Event, error) {
		if prev != nil {
			return r.q.CreateEventWithID(ctx, tx, db.CreateEventWithIDParams{
				ID: prev.ID, UserID: in.UserID, Kind: in.Kind, Payload: in.Payload, CreatedAt: at,
			})
		}
		e, err := r.q.CreateEvent(ctx, tx, db.CreateEventParams{UserID: in.UserID, Kind: in.Kind, Payload: in.Payload, CreatedAt: at})
		if err == nil {
			tx.Touch("events", e.ID)
		}
		return e, err
	})
}

// Get returns one event, or ErrNotFound.
func (r *Events) Get(ctx context.Context, id int64) (db.Event, error) {
	e, err := dualwrite.Read(ctx, r.f, opEventGet, func(ctx context.Context, q pgshift.Querier) (db.Event, error) {
		return r.q.GetEvent(ctx, q, id)
	})
	return e, notFound(err)
}

// ListByUser returns up to limit of a user's events with ids after the given
// one, in id order (0 for the first page).
func (r *Events) ListByUser(ctx context.Context, userID uuid.UUID, after int64, limit int32) ([]db.Event, error) {
	return dualwrite.Read(ctx, r.f, opEventList, func(ctx context.Context, q pgshift.Querier) ([]db.Event, error) {
		return r.q.ListEventsByUser(ctx, q, db.ListEventsByUserParams{UserID: userID, AfterID: after, PageSize: limit})
	})
}

// Update sets an event's kind and payload, or returns ErrNotFound.
func (r *Events) Update(ctx context.Context, id int64, kind string, payload json.RawMessage) (db.Event, error) {
	e, err := dualwrite.Write(ctx, r.f, opEventUpdate, func(ctx context.Context, tx *dualwrite.Tx, _ *db.Event) (db.Event, error) {
		tx.Touch("events", id)
		return r.q.UpdateEvent(ctx, tx, db.UpdateEventParams{ID: id, Kind: kind, Payload: payload})
	})
	return e, notFound(err)
}

// Delete removes an event, or returns ErrNotFound.
func (r *Events) Delete(ctx context.Context, id int64) error {
	_, err := dualwrite.Write(ctx, r.f, opEventDelete, func(ctx context.Context, tx *dualwrite.Tx, prev *int64) (int64, error) {
		tx.Touch("events", id)
		n, err := r.q.DeleteEvent(ctx, tx, id)
		if err != nil {
			return 0, err
		}
		return deleted(n, prev)
	})
	return err
}
