package main

import (
	"encoding/json"
	"net/http"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/repo"
	"github.com/pgshift/pgshift/repo/db"
)

// The API's resources: users, their posts and their events, each handler
// one or two repository calls.

type userJSON struct {
	Email   string `json:"email"`
	Name    string `json:"name"`
	Country string `json:"country"`
	Plan    string `json:"plan"`
}

type userPatchJSON struct {
	Name    *string `json:"name"`
	Country *string `json:"country"`
	Plan    *string `json:"plan"`
}

type postJSON struct {
	Title *string `json:"title"`
	Body  *string `json:"body"`
}

type eventJSON struct {
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload"`
}

type deletedJSON struct {
	Deleted uuid.UUID `json:"deleted"`
}

func (a *app) listUsers(r *http.Request) (int, any, error) {
	after, limit, err := page(r, uuid.Parse)
	if err != nil {
		return 0, nil, err
	}
	users, err := a.store.Users.List(r.Context(), after, limit)
	return http.StatusOK, list(users, limit, func(u db.User) any { return u.ID }), err
}

func (a *app) createUser(r *http.Request) (int, any, error) {
	var in userJSON
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if in.Email == "" || in.Name == "" {
		return 0, nil, badRequest("email and name are required")
	}
	u, err := a.store.Users.Create(r.Context(), repo.NewUser{Email: in.Email, Name: in.Name, Country: in.Country, Plan: in.Plan})
	return http.StatusCreated, u, err
}

func (a *app) getUser(r *http.Request, id uuid.UUID) (int, any, error) {
	u, err := a.store.Users.Get(r.Context(), id)
	return http.StatusOK, u, err
}

// updateUser sets the fields given and keeps the others.
func (a *app) updateUser(r *http.Request, id uuid.UUID) (int, any, error) {
	var in userPatchJSON
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	var upd repo.UserUpdate
	if in.Name == nil || in.Country == nil || in.Plan == nil {
		// Fields not sent keep their values: read them first.
		u, err := a.store.Users.Get(r.Context(), id)
		if err != nil {
			return 0, nil, err
		}
		upd = repo.UserUpdate{Name: u.Name, Country: u.Country, Plan: u.Plan}
	}
	setIf(&upd.Name, in.Name)
	setIf(&upd.Country, in.Country)
	setIf(&upd.Plan, in.Plan)
	u, err := a.store.Users.Update(r.Context(), id, upd)
	return http.StatusOK, u, err
}

func (a *app) deleteUser(r *http.Request, id uuid.UUID) (int, any, error) {
	return http.StatusOK, deletedJSON{id}, a.store.Users.Delete(r.Context(), id)
}

func (a *app) listPosts(r *http.Request, id uuid.UUID) (int, any, error) {
	after, limit, err := page(r, uuid.Parse)
	if err != nil {
		return 0, nil, err
	}
	posts, err := a.store.Posts.ListByUser(r.Context(), id, after, limit)
	return http.StatusOK, list(posts, limit, func(p db.Post) any { return p.ID }), err
}

func (a *app) createPost(r *http.Request, id uuid.UUID) (int, any, error) {
	var in postJSON
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if in.Title == nil || *in.Title == "" {
		return 0, nil, badRequest("title is required")
	}
	p := repo.NewPost{UserID: id, Title: *in.Title}
	setIf(&p.Body, in.Body)
	post, err := a.store.Posts.Create(r.Context(), p)
	return http.StatusCreated, post, err
}

func (a *app) getPost(r *http.Request, id uuid.UUID) (int, any, error) {
	p, err := a.store.Posts.Get(r.Context(), id)
	return http.StatusOK, p, err
}

// updatePost sets the fields given and keeps the others.
func (a *app) updatePost(r *http.Request, id uuid.UUID) (int, any, error) {
	var in postJSON
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	var upd repo.PostUpdate
	if in.Title == nil || in.Body == nil {
		// Fields not sent keep their values: read them first.
		p, err := a.store.Posts.Get(r.Context(), id)
		if err != nil {
			return 0, nil, err
		}
		upd = repo.PostUpdate{Title: p.Title, Body: p.Body}
	}
	setIf(&upd.Title, in.Title)
	setIf(&upd.Body, in.Body)
	p, err := a.store.Posts.Update(r.Context(), id, upd)
	return http.StatusOK, p, err
}

func (a *app) deletePost(r *http.Request, id uuid.UUID) (int, any, error) {
	return http.StatusOK, deletedJSON{id}, a.store.Posts.Delete(r.Context(), id)
}

func (a *app) listEvents(r *http.Request, id uuid.UUID) (int, any, error) {
	after, limit, err := page(r, parseInt64)
	if err != nil {
		return 0, nil, err
	}
	events, err := a.store.Events.ListByUser(r.Context(), id, after, limit)
	return http.StatusOK, list(events, limit, func(e db.Event) any { return e.ID }), err
}

func (a *app) createEvent(r *http.Request, id uuid.UUID) (int, any, error) {
	var in eventJSON
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	if in.Kind == "" {
		return 0, nil, badRequest("kind is required")
	}
	e, err := a.store.Events.Create(r.Context(), repo.NewEvent{UserID: id, Kind: in.Kind, Payload: in.Payload})
	return http.StatusCreated, e, err
}

// byID adapts a handler of one resource, named by the {id} in the path.
func byID(fn func(r *http.Request, id uuid.UUID) (int, any, error)) apiFunc {
	return func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		return fn(r, id)
	}
}

func setIf(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}
