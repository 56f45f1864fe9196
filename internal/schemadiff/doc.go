// Package schemadiff compares the catalogs of two PostgreSQL databases, old
// and new, for one schema, and lists every difference that matters to
// pgshift: a row that fits one side must fit the other, and the tools that
// copy and compare rows must find the same tables, columns and keys on both.
//
// What is compared, per schema (pgshift's own schema "pgshift" never):
//
//   - tables (ordinary and partitioned) by name;
//   - columns of tables present on both sides, by name: type (format_type,
//     so typmods such as varchar(20) or numeric(10,2) count), nullability,
//     and default, where an identity or generated column's "default" is its
//     GENERATED clause;
//   - primary keys, unique, foreign key, check and exclusion constraints, as
//     pg_get_constraintdef renders them;
//   - indexes that back no primary key, unique or exclusion constraint (those
//     are reported as the constraint), as pg_get_indexdef renders them with
//     the index's own name left out;
//   - sequences: type, increment, minimum, maximum and cycle, never their
//     current values (see package sequences for those);
//   - enum types and their labels in order.
//
// Constraints and indexes are matched by definition first, so the same
// constraint under another name is no difference; what remains is paired by
// name (one "changed" difference with both definitions) and the rest is
// reported as present on one side only (Old or New empty). Tables, columns,
// sequences and enums are matched by name. A table missing on one side is
// one difference; its columns, constraints and indexes are not listed again.
//
// Old and new may run different major versions, which print the same
// definition differently. Definitions whose text differs are parsed again
// by new's server, both sides' on a temporary copy of the table, and
// compared as the expression trees new makes of them, without what only
// says how to print them (a call written as timezone('utc', now()) or as
// now() AT TIME ZONE 'utc' is one call); reports show each side's own
// text. A partition's identity column is compared on its parent only
// (PostgreSQL 17 marks the partition's column too, older versions do not).
//
// Not compared: column order, collations, comments, ownership and grants,
// triggers, views, functions, and storage parameters.
//
// The catalogs are read in a transaction per side with search_path set to
// pg_catalog alone, so every name in a definition is schema-qualified the
// same way on both sides whatever the connections' settings are.
//
// Beside the differences, a report warns (Report.Warnings, which leave it
// equal) about old's columns whose values the database makes when a write
// does not pass them: defaults that call a function that is not immutable
// (now(), CURRENT_TIMESTAMP, gen_random_uuid(), nextval() of a serial),
// identity columns, and BEFORE INSERT or UPDATE row triggers. Each side makes
// its own value, so the rows differ unless the write function passes it.
//
// Every difference carries a Kind, the qualified name of the object, the old
// and new text and a message a person can act on; Report.Write renders them
// for a terminal and the JSON tags serve --json.
package schemadiff
