package repo

import (
	"context"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/repo/db"
)

// Users is the repository of users. A user is its own routing key's data.
type Users struct{ base }

var (
	opUserCreate = dualwrite.Op{Name: "users.create", NewRows: true, OneStatement: true}
	opUserGet    = dualwrite.Op{Name: "users.get"}
	opUserList   = dualwrite.Op{Name: "users.list"}
	opUserUpdate = dualwrite.Op{Name: "users.update", OneStatement: true}
	opUserDelete = dualwrite.Op{Name: "users.delete"}
)

// NewUser is what Create needs.
type NewUser struct {
	Email, Name, Country, Plan string
}

// UserUpdate holds the fields Update sets.
type UserUpdate struct {
	Name, Country, Plan string
}

// Create inserts a user with a new UUIDv7 id.
func (r *Users) Create(ctx context.Context, in NewUser) (db.User, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return db.User{}, err
	}
	return r.CreateWithID(ctx, id, in)
}

// CreateWithID inserts a user with the id the caller chose.
func (r *Users) CreateWithID(ctx context.Context, id uuid.UUID, in NewUser) (db.User, error) {
	arg := db.CreateUserParams{ID: id, Email: in.Email, Name: in.Name, Country: in.Country, Plan: in.Plan, CreatedAt: r.now()}
	if arg.Plan == "" {
		arg.Plan = "free"
	}
	return dualwrite.Write(ctx, r.f, opUserCreate, func(ctx context.Context, tx *dualwrite.Tx, _ *db.User) (db.User, error) {
		tx.Touch("users", id)
		return r.q.CreateUser(ctx, tx, arg)
	})
}

// Get returns one user, or ErrNotFound.
func (r *Users) Get(ctx context.Context, id uuid.UUID) (db.User, error) {
	u, err := dualwrite.Read(ctx, r.f, opUserGet, func(ctx context.Context, q pgshift.Querier) (db.User, error) {
		return r.q.GetUser(ctx, q, id)
	})
	return u, notFound(err)
}

// List returns up to limit users with ids after the given one, in id order
// (uuid.Nil for the first page).
func (r *Users) List(ctx context.Context, after uuid.UUID, limit int32) ([]db.User, error) {
	return dualwrite.Read(ctx, r.f, opUserList, func(ctx context.Context, q pgshift.Querier) ([]db.User, error) {
		return r.q.ListUsers(ctx, q, db.ListUsersParams{AfterID: after, PageSize: limit})
	})
}

// Update sets a user's name, country and plan, or returns ErrNotFound.
func (r *Users) Update(ctx context.Context, id uuid.UUID, in UserUpdate) (db.User, error) {
	arg := db.UpdateUserParams{ID: id, Name: in.Name, Country: in.Country, Plan: in.Plan, UpdatedAt: r.now()}
	u, err := dualwrite.Write(ctx, r.f, opUserUpdate, func(ctx context.Context, tx *dualwrite.Tx, _ *db.User) (db.User, error) {
		tx.Touch("users", id)
		return r.q.UpdateUser(ctx, tx, arg)
	})
	return u, notFound(err)
}

// Delete removes a user and, by cascade, its posts and events, or returns
// ErrNotFound. A write Touches every row it changes, those the database
// changes for it too (ON DELETE CASCADE): it locks the user, so that no post
// or event of it can be added meanwhile, Touches the rows the cascade will
// delete, then deletes.
func (r *Users) Delete(ctx context.Context, id uuid.UUID) error {
	_, err := dualwrite.Write(ctx, r.f, opUserDelete, func(ctx context.Context, tx *dualwrite.Tx, prev *int64) (int64, error) {
		tx.Touch("users", id)
		owned, err := r.q.LockUserOwnedRows(ctx, tx, id)
		if err != nil {
			return 0, err
		}
		for _, row := range owned {
			tx.Touch(row.TableName, row.Key)
		}
		n, err := r.q.DeleteUser(ctx, tx, id)
		if err != nil {
			return 0, err
		}
		return deleted(n, prev)
	})
	return err
}
