-- name: GetAuthor :one
SELECT * FROM authors WHERE author_id = $1;

-- name: CreateAuthor :one
INSERT INTO authors (name) VALUES ($1) RETURNING *;

-- name: CreateAuthorWithID :one
INSERT INTO authors (author_id, name) VALUES ($1, $2) RETURNING *;

-- name: GetBook :one
SELECT * FROM books WHERE book_id = $1;

-- name: CreateBook :one
INSERT INTO books (author_id, isbn, book_type, title, year, available, tags)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: CreateBookWithID :one
INSERT INTO books (book_id, author_id, isbn, book_type, title, year, available, tags)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: UpdateBook :exec
UPDATE books SET title = $2, tags = $3 WHERE book_id = $1;

-- name: UpdateBookISBN :exec
UPDATE books SET title = $2, tags = $3, isbn = $4 WHERE book_id = $1;

-- name: BooksByTags :many
SELECT b.book_id, b.title, a.name, b.isbn, b.tags
FROM books b LEFT JOIN authors a ON a.author_id = b.author_id
WHERE b.tags && sqlc.arg(tags)::text[]
ORDER BY b.book_id;

-- name: BooksByTitleYear :many
SELECT * FROM books WHERE title = $1 AND year = $2 ORDER BY book_id;

-- name: DeleteBook :exec
DELETE FROM books WHERE book_id = $1;
