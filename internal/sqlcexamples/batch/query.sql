-- name: GetAuthor :one
SELECT * FROM authors WHERE author_id = $1;

-- name: CreateAuthors :batchone
INSERT INTO authors (name) VALUES ($1) RETURNING *;

-- name: CreateAuthorsWithID :batchone
INSERT INTO authors (author_id, name) VALUES ($1, $2) RETURNING *;

-- name: CopyBooks :copyfrom
INSERT INTO books (book_id, author_id, title, year, tags) VALUES ($1, $2, $3, $4, $5);

-- name: UpdateBookTitles :batchexec
UPDATE books SET title = $2 WHERE book_id = $1;

-- name: BooksByYear :batchmany
SELECT * FROM books WHERE year = $1 ORDER BY book_id;

-- name: DeleteBooks :batchexec
DELETE FROM books WHERE book_id = $1;
