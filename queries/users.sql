-- name: CreateUser :one
INSERT INTO users (id, email, name, country, plan, created_at, updated_at)
VALUES (@id, @email, @name, @country, @plan, @created_at, @created_at)
RETURNING *;

-- name: GetUser :one
SELECT * FROM users WHERE id = @id;

-- name: ListUsers :many
-- Keyset pagination: pass the last id of the previous page (the zero UUID for
-- the first page).
SELECT * FROM users
WHERE id > @after_id
ORDER BY id
LIMIT @page_size;

-- name: UpdateUser :one
UPDATE users
SET name = @name, country = @country, plan = @plan, updated_at = @updated_at
WHERE id = @id
RETURNING *;

-- name: DeleteUser :execrows
DELETE FROM users WHERE id = @id;

-- name: LockUserOwnedRows :many
-- Locks the user (so no post or event of it can be added until the
-- transaction ends) and returns the table and key, as text, of every row that
-- deleting the user deletes by cascade: the rows a delete must Touch.
WITH owner AS (SELECT users.id AS user_id FROM users WHERE users.id = @id FOR UPDATE)
SELECT 'posts'::text AS table_name, p.id::text AS key FROM posts p JOIN owner o ON p.user_id = o.user_id
UNION ALL
SELECT 'events'::text, e.id::text FROM events e JOIN owner o ON e.user_id = o.user_id;
