-- name: CreatePost :one
INSERT INTO posts (id, user_id, title, body, created_at, updated_at)
VALUES (@id, @user_id, @title, @body, @created_at, @created_at)
RETURNING *;

-- name: GetPost :one
SELECT * FROM posts WHERE id = @id;

-- name: ListPostsByUser :many
-- Keyset pagination within one owner: pass the last id of the previous page
-- (the zero UUID for the first page).
SELECT * FROM posts
WHERE user_id = @user_id AND id > @after_id
ORDER BY id
LIMIT @page_size;

-- name: UpdatePost :one
UPDATE posts
SET title = @title, body = @body, updated_at = @updated_at
WHERE id = @id
RETURNING *;

-- name: DeletePost :execrows
DELETE FROM posts WHERE id = @id;
