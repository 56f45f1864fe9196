package backfill

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// lastLine passes COPY text through to w and keeps its last complete line:
// the last row sent, whose key ends the chunk.
type lastLine struct {
	w         io.Writer
	cur, last []byte
}

func (l *lastLine) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.cur = append(l.cur, rest...)
			break
		}
		l.last = append(append(l.last[:0], l.cur...), rest[:i]...)
		l.cur, rest = l.cur[:0], rest[i+1:]
	}
	return l.w.Write(p)
}

// keyOf is the primary key, in text form, of a row in COPY's text format
// with the table's stored columns.
func (c *copier) keyOf(line []byte) ([]string, error) {
	fields := bytes.Split(line, []byte{'\t'})
	if len(fields) != len(c.t.Columns) {
		return nil, fmt.Errorf("last row copied has %d fields, the table %d columns", len(fields), len(c.t.Columns))
	}
	key := make([]string, len(c.t.Key))
	for i, k := range c.t.Key {
		at := -1
		for j, col := range c.t.Columns {
			if col.Name == k.Name {
				at = j
			}
		}
		if at < 0 {
			return nil, fmt.Errorf("key column %s is not a stored column", k.Name)
		}
		key[i] = unescapeCopyText(fields[at])
	}
	return key, nil
}

// unescapeCopyText decodes one field of COPY's text format (backslash
// escapes; keys are never NULL).
func unescapeCopyText(f []byte) string {
	if bytes.IndexByte(f, '\\') < 0 {
		return string(f)
	}
	out := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		if f[i] != '\\' || i+1 == len(f) {
			out = append(out, f[i])
			continue
		}
		i++
		switch ch := f[i]; ch {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			j := digits(f, i+1, 2, isHex)
			if j == i+1 {
				out = append(out, 'x')
				continue
			}
			v, _ := strconv.ParseUint(string(f[i+1:j]), 16, 8)
			out = append(out, byte(v))
			i = j - 1
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := digits(f, i, 3, func(b byte) bool { return b >= '0' && b <= '7' })
			v, _ := strconv.ParseUint(string(f[i:j]), 8, 8)
			out = append(out, byte(v))
			i = j - 1
		default:
			out = append(out, ch)
		}
	}
	return string(out)
}

// digits is the end of the up to n digits (as isDigit says) of f from i.
func digits(f []byte, i, n int, isDigit func(byte) bool) int {
	j := i
	for j < len(f) && j < i+n && isDigit(f[j]) {
		j++
	}
	return j
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}
