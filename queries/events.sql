-- name: CreateEvent :one
-- The authoritative side assigns the id.
INSERT INTO events (user_id, kind, payload, created_at)
VALUES (@user_id, @kind, @payload, @created_at)
RETURNING *;

-- name: CreateEventWithID :one
-- The other side receives the id the authoritative side assigned.
INSERT INTO events (id, user_id, kind, payload, created_at)
VALUES (@id, @user_id, @kind, @payload, @created_at)
RETURNING *;

-- name: GetEvent :one
SELECT * FROM events WHERE id = @id;

-- name: ListEventsByUser :many
-- Keyset pagination within one owner: pass the last id of the previous page
-- (0 for the first page).
SELECT * FROM events
WHERE user_id = @user_id AND id > @after_id
ORDER BY id
LIMIT @page_size;

-- name: UpdateEvent :one
UPDATE events
SET kind = @kind, payload = @payload
WHERE id = @id
RETURNING *;

-- name: DeleteEvent :execrows
DELETE FROM events WHERE id = @id;
