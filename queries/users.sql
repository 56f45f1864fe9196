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
