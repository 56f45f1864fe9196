package repo

import (
	"context"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/repo/db"
)

// Posts is the repository of posts. A post belongs to its author's routing
// key.
type Posts struct{ base }

var (
	opPostCreate = dualwrite.Op{Name: "posts.create", NewRows: true, OneStatement: true}
	opPostGet    = dualwrite.Op{Name: "posts.get"}
	opPostList   = dualwrite.Op{Name: "posts.list_by_user"}
	opPostUpdate = dualwrite.Op{Name: "posts.update", OneStatement: true}
	opPostDelete = dualwrite.Op{Name: "posts.delete", OneStatement: true}
)

// NewPost is what Create needs.
type NewPost struct {
	UserID      uuid.UUID
	Title, Body string
}

// PostUpdate holds the fields Update sets.
type PostUpdate struct {
	Title, Body string
}

// Create inserts a post with a new UUIDv7 id.
func (r *Posts) Create(ctx context.Context, in NewPost) (db.Post, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return db.Post{}, err
	}
	arg := db.CreatePostParams{ID: id, UserID: in.UserID, Title: in.Title, Body: in.Body, CreatedAt: r.now()}
	return dualwrite.Write(ctx, r.f, opPostCreate, func(ctx context.Context, tx *dualwrite.Tx, _ *db.Post) (db.Post, error) {
		tx.Touch("posts", id)
		return r.q.CreatePost(ctx, tx, arg)
	})
}

// Get returns one post, or ErrNotFound.
func (r *Posts) Get(ctx context.Context, id uuid.UUID) (db.Post, error) {
	p, err := dualwrite.Read(ctx, r.f, opPostGet, func(ctx context.Context, q pgshift.Querier) (db.Post, error) {
		return r.q.GetPost(ctx, q, id)
	})
	return p, notFound(err)
}

// ListByUser returns up to limit of a user's posts with ids after the given
// one, in id order (uuid.Nil for the first page).
func (r *Posts) ListByUser(ctx context.Context, userID, after uuid.UUID, limit int32) ([]db.Post, error) {
	return dualwrite.Read(ctx, r.f, opPostList, func(ctx context.Context, q pgshift.Querier) ([]db.Post, error) {
		return r.q.ListPostsByUser(ctx, q, db.ListPostsByUserParams{UserID: userID, AfterID: after, PageSize: limit})
	})
}

// Update sets a post's title and body, or returns ErrNotFound.
func (r *Posts) Update(ctx context.Context, id uuid.UUID, in PostUpdate) (db.Post, error) {
	arg := db.UpdatePostParams{ID: id, Title: in.Title, Body: in.Body, UpdatedAt: r.now()}
	p, err := dualwrite.Write(ctx, r.f, opPostUpdate, func(ctx context.Context, tx *dualwrite.Tx, _ *db.Post) (db.Post, error) {
		tx.Touch("posts", id)
		return r.q.UpdatePost(ctx, tx, arg)
	})
	return p, notFound(err)
}

// Delete removes a post, or returns ErrNotFound.
func (r *Posts) Delete(ctx context.Context, id uuid.UUID) error {
	_, err := dualwrite.Write(ctx, r.f, opPostDelete, func(ctx context.Context, tx *dualwrite.Tx, prev *int64) (int64, error) {
		tx.Touch("posts", id)
		n, err := r.q.DeletePost(ctx, tx, id)
		if err != nil {
			return 0, err
		}
		return deleted(n, prev)
	})
	return err
}
