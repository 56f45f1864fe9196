-- A table keyed by a bigserial: the database makes every key.
CREATE TABLE authors (
    id   bigserial PRIMARY KEY,
    name text      NOT NULL,
    bio  text
);
