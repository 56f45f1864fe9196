// Package queries holds the SQL that pgshift's reference repositories and its
// own bookkeeping tables are made of, embedded so that tests, the demo and
// applications can create them without shipping files.
//
// The *.sql files in this directory are compiled by sqlc (configuration in
// sqlc.yaml at the module root) into repo/db and internal/pgshiftdb.
// Regenerate after editing them:
//
//	go generate ./...
package queries

import _ "embed"

//go:generate go tool sqlc generate -f ../sqlc.yaml

// Schema is the DDL of the reference domain (users, posts, events).
//
//go:embed schema.sql
var Schema string

// PgshiftSchema is the DDL of pgshift's own tables (schema "pgshift": the
// repair log and backfill progress). It is idempotent.
//
//go:embed pgshift/schema.sql
var PgshiftSchema string
