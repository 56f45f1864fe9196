package schemadiff

import (
	"fmt"
	"io"
	"strings"
)

// Kind is the kind of a difference. Its value is the stable name used in
// JSON output.
type Kind string

// The kinds of difference Diff reports. "Missing" means present on old and
// absent on new; "Extra" means present on new only. For the other kinds an
// empty Old or New means the object is absent on that side.
const (
	MissingTable        Kind = "missing_table"
	ExtraTable          Kind = "extra_table"
	MissingColumn       Kind = "missing_column"
	ExtraColumn         Kind = "extra_column"
	ColumnType          Kind = "column_type"
	Nullability         Kind = "nullability"
	Default             Kind = "default"
	PrimaryKey          Kind = "primary_key"
	UniqueConstraint    Kind = "unique_constraint"
	ForeignKey          Kind = "foreign_key"
	CheckConstraint     Kind = "check_constraint"
	ExclusionConstraint Kind = "exclusion_constraint"
	Index               Kind = "index"
	Sequence            Kind = "sequence"
	Enum                Kind = "enum"
)

// label is how a message names an object of the kind.
func (k Kind) label() string {
	switch k {
	case MissingTable, ExtraTable:
		return "table"
	case MissingColumn, ExtraColumn:
		return "column"
	case ColumnType:
		return "type of column"
	case Nullability:
		return "nullability of column"
	case Default:
		return "default of column"
	case PrimaryKey:
		return "primary key"
	case UniqueConstraint:
		return "unique constraint"
	case ForeignKey:
		return "foreign key"
	case CheckConstraint:
		return "check constraint"
	case ExclusionConstraint:
		return "exclusion constraint"
	case Index:
		return "index"
	case Sequence:
		return "sequence"
	case Enum:
		return "enum type"
	}
	return string(k)
}

// Difference is one way in which new's schema differs from old's.
type Difference struct {
	Kind Kind `json:"kind"`
	// Object is the qualified name of what differs: schema.table,
	// schema.table.column, schema.table.constraint, schema.index,
	// schema.sequence or schema.type. A part is double-quoted when it is not
	// a plain lower-case identifier.
	Object string `json:"object"`
	// Old and New are the object's definition on each side; empty where it
	// is absent.
	Old     string `json:"old"`
	New     string `json:"new"`
	Message string `json:"message"`
}

// Report is the result of Diff.
type Report struct {
	Schema      string       `json:"schema"`
	Differences []Difference `json:"differences"`
	// Warnings are about old's schema, not differences: they leave the
	// report equal.
	Warnings []Warning `json:"warnings"`
}

// Warning names a column whose value the database makes when a write does
// not pass one (a default such as now() or gen_random_uuid(), an identity
// column), or a trigger that may set columns: the two sides make different
// values unless the write function passes the value.
type Warning struct {
	// Object is schema.table.column, or schema.table.trigger for a trigger.
	Object  string `json:"object"`
	Message string `json:"message"`
}

func newWarning(schema string, m made) Warning {
	switch {
	case m.Trigger != "":
		return Warning{Object: quoteName(schema, m.Table, m.Trigger), Message: fmt.Sprintf(
			"trigger %s runs before each insert or update of %s and may set columns on each side itself: what it sets must not depend on the side (time, sequences, random values), or the write function must set those columns",
			quoteName(m.Trigger), quoteName(schema, m.Table))}
	case m.Default == "identity":
		return Warning{Object: quoteName(schema, m.Table, m.Column), Message: fmt.Sprintf(
			"column %s is an identity column: a write that does not pass its value gets one from each side's sequence; pass the authoritative side's value (RETURNING) to the other side, and run pgshift sync-sequences before writes move",
			quoteName(schema, m.Table, m.Column))}
	}
	return Warning{Object: quoteName(schema, m.Table, m.Column), Message: fmt.Sprintf(
		"column %s defaults to %s, which makes a different value on each side: a write must pass the value (one the application makes, or the authoritative side's from RETURNING)",
		quoteName(schema, m.Table, m.Column), m.Default)}
}

// Equal reports whether old and new have no difference.
func (r *Report) Equal() bool { return len(r.Differences) == 0 }

// Write renders the report for a person: one line per difference.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	if r.Equal() {
		fmt.Fprintf(&b, "schema %s: old and new are equal\n", quoteName(r.Schema))
	} else {
		fmt.Fprintf(&b, "schema %s: %d difference(s) between old and new\n", quoteName(r.Schema), len(r.Differences))
		for _, d := range r.Differences {
			fmt.Fprintf(&b, "  %-21s %s\n", d.Kind, d.Message)
		}
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", w.Message)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// newDifference builds a difference with its message.
func newDifference(kind Kind, object, oldValue, newValue string) Difference {
	var msg string
	switch {
	case kind == MissingTable || kind == MissingColumn:
		msg = fmt.Sprintf("%s %s exists on old but not on new", kind.label(), object)
	case kind == ExtraTable || kind == ExtraColumn:
		msg = fmt.Sprintf("%s %s exists on new but not on old", kind.label(), object)
	case newValue == "":
		msg = fmt.Sprintf("%s %s is missing on new (old: %s)", kind.label(), object, oldValue)
	case oldValue == "":
		msg = fmt.Sprintf("%s %s is on new only (new: %s)", kind.label(), object, newValue)
	default:
		msg = fmt.Sprintf("%s %s differs: old %s; new %s", kind.label(), object, oldValue, newValue)
	}
	return Difference{Kind: kind, Object: object, Old: oldValue, New: newValue, Message: msg}
}

// quoteName renders the identifiers of a qualified name, double-quoting the
// ones that are not plain lower-case identifiers.
func quoteName(parts ...string) string {
	out := make([]string, len(parts))
	for i, p := range parts {
		if plainIdent(p) {
			out[i] = p
		} else {
			out[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
		}
	}
	return strings.Join(out, ".")
}

func plainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case (r >= '0' && r <= '9') || r == '$':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}
