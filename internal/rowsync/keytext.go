package rowsync

import (
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// KeyText formats primary key values, as an application holds them or as
// pgx scans them, into their text form: the form the repair log stores,
// CopyKeys and the chunk functions take, and the form PostgreSQL itself
// gives the value (col::text) on a connection with SessionParams. The last
// point matters: a row named by KeyText and the same row named by the server
// (a capture trigger, a key read back from a chunk) are the same string, so
// they take the same lock and are repaired once.
//
//   - string: as it is (text, varchar, and any type given in its text form);
//   - []byte: bytea's hex form, \x0102;
//   - time.Time: in UTC, to the microsecond, "2006-01-02 15:04:05.999999+00",
//     as a timestamptz column prints it. A timestamp (without time zone) or
//     date column reads the same text as the same value, but prints it
//     without the offset; give such keys as the string the server prints
//     when a key must also match the server's own text;
//   - bool: true, false;
//   - integers: decimal; floats: the shortest form that reads back exactly,
//     with an exponent only where PostgreSQL writes one;
//   - [16]byte (a uuid as pgx scans it into any), fmt.Stringer (uuid.UUID);
//   - driver.Valuer (pgtype.Numeric, pgtype.UUID, ...): the value it gives.
func KeyText(values ...any) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = keyValueText(v)
	}
	return out
}

func keyValueText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return `\x` + hex.EncodeToString(v)
	case time.Time:
		return timestampText(v)
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return floatText(v, 64, 15)
	case float32:
		return floatText(float64(v), 32, 6)
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", v[0:4], v[4:6], v[6:8], v[8:10], v[10:16])
	case driver.Valuer:
		dv, err := v.Value()
		if err != nil || dv == nil {
			return fmt.Sprint(v)
		}
		return keyValueText(dv)
	case fmt.Stringer:
		return v.String()
	}
	// Integers of any size and named integer types.
	switch rv := reflect.ValueOf(v); {
	case rv.CanInt():
		return strconv.FormatInt(rv.Int(), 10)
	case rv.CanUint():
		return strconv.FormatUint(rv.Uint(), 10)
	}
	return fmt.Sprint(v)
}

// timestampText is t as a timestamptz prints in UTC with DateStyle ISO:
// rounded to the microsecond, trailing zeros of the fraction dropped.
func timestampText(t time.Time) string {
	return t.UTC().Round(time.Microsecond).Format("2006-01-02 15:04:05.999999-07")
}

// floatText is f as PostgreSQL's float8out (float4out for bits 32) prints it
// with extra_float_digits > 0: the shortest digits that read back exactly,
// in exponent form when the decimal exponent is below -4 or at least
// expDigits (15 for double, 6 for real).
func floatText(f float64, bits, expDigits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, bits)
	exp, err := strconv.Atoi(e[strings.LastIndexByte(e, 'e')+1:])
	if err == nil && (exp < -4 || exp >= expDigits) {
		return e
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}
