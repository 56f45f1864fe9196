-- Serial-keyed authors written in batches (keys from RETURNING), and books
-- keyed by application-made UUIDs, copied in with COPY.
CREATE TABLE authors (
    author_id bigserial PRIMARY KEY,
    name      text      NOT NULL
);

CREATE TABLE books (
    book_id   uuid    PRIMARY KEY,
    author_id bigint  NOT NULL REFERENCES authors (author_id),
    title     text    NOT NULL,
    year      integer NOT NULL,
    tags      text[]  NOT NULL DEFAULT '{}'
);
