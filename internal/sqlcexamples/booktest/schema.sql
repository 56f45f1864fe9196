-- Authors and their books: serial keys, an enum, a text array, a foreign key.
CREATE TABLE authors (
    author_id serial PRIMARY KEY,
    name      text   NOT NULL DEFAULT ''
);

CREATE INDEX authors_name_idx ON authors (name);

CREATE TYPE book_type AS ENUM ('FICTION', 'NONFICTION');

CREATE TABLE books (
    book_id   serial      PRIMARY KEY,
    author_id integer     NOT NULL REFERENCES authors (author_id),
    isbn      text        NOT NULL DEFAULT '' UNIQUE,
    book_type book_type   NOT NULL DEFAULT 'FICTION',
    title     text        NOT NULL DEFAULT '',
    year      integer     NOT NULL DEFAULT 2000,
    available timestamptz NOT NULL,
    tags      text[]      NOT NULL DEFAULT '{}'
);

CREATE INDEX books_title_year_idx ON books (title, year);
