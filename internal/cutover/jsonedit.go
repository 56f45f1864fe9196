package cutover

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// rewrite returns orig changed so that it decodes to doc, touching only the
// values that differ from what orig decodes to: the rest of the file keeps
// its bytes (layout, key order, comments in whitespace none), so a move is a
// one-line diff where flag files are reviewed. When orig cannot be followed
// (duplicate keys, say) the whole document is written indented instead.
func rewrite(orig []byte, doc any) ([]byte, error) {
	var before any
	if err := json.Unmarshal(orig, &before); err != nil {
		return nil, err
	}
	if root, err := parseSpans(orig); err == nil {
		var sp []splice
		diffSpans(orig, root, before, doc, &sp)
		out := applySplices(orig, sp)
		var got any
		if json.Unmarshal(out, &got) == nil && reflect.DeepEqual(got, doc) {
			return out, nil
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// span is where one JSON value lies in the text: [start, end).
type span struct {
	start, end int
	keys       []string // an object's member keys, in order
	keyStarts  []int    // where each member's key begins
	kids       []*span  // an object's member values, or an array's elements
}

type splice struct {
	start, end int
	text       string
}

func applySplices(orig []byte, sp []splice) []byte {
	sort.Slice(sp, func(i, j int) bool { return sp[i].start > sp[j].start })
	out := slices.Clone(orig)
	for _, s := range sp {
		out = slices.Concat(out[:s.start], []byte(s.text), out[s.end:])
	}
	return out
}

// diffSpans records the splices that turn the value at n (old) into nw.
func diffSpans(text []byte, n *span, old, nw any, sp *[]splice) {
	if reflect.DeepEqual(old, nw) {
		return
	}
	switch o := old.(type) {
	case map[string]any:
		if m, ok := nw.(map[string]any); ok && diffObject(text, n, o, m, sp) {
			return
		}
	case []any:
		a, ok := nw.([]any)
		if !ok || len(n.kids) != len(o) {
			break
		}
		if len(a) == len(o) {
			for i := range o {
				diffSpans(text, n.kids[i], o[i], a[i], sp)
			}
			return
		}
		*sp = append(*sp, splice{n.start, n.end, renderArray(text, n, o, a)})
		return
	}
	*sp = append(*sp, splice{n.start, n.end, render(nw)})
}

// diffObject records the splices that turn object o at n into m: members
// changed in place, members added after the last one. It returns false
// when a member goes (the caller replaces the whole object).
func diffObject(text []byte, n *span, o, m map[string]any, sp *[]splice) bool {
	if len(n.keys) != len(o) || len(n.keys) == 0 {
		return false
	}
	for k := range o {
		if _, kept := m[k]; !kept {
			return false
		}
	}
	var added []string
	for k := range m {
		if _, had := o[k]; !had {
			added = append(added, k)
		}
	}
	sort.Strings(added)
	for i, k := range n.keys {
		diffSpans(text, n.kids[i], o[k], m[k], sp)
	}
	if len(added) > 0 {
		sep := memberSep(text, n)
		var b strings.Builder
		for _, k := range added {
			b.WriteString(",")
			b.WriteString(sep)
			b.WriteString(render(k))
			b.WriteString(": ")
			b.WriteString(render(m[k]))
		}
		last := n.kids[len(n.kids)-1].end
		*sp = append(*sp, splice{last, last, b.String()})
	}
	return true
}

// memberSep is the text between an object's comma and its next key: the
// layout a member added to it follows.
func memberSep(text []byte, n *span) string {
	if len(n.keys) >= 2 {
		between := string(text[n.kids[0].end:n.keyStarts[1]])
		if i := strings.Index(between, ","); i >= 0 {
			return between[i+1:]
		}
	}
	return string(text[n.start+1 : n.keyStarts[0]])
}

// renderArray writes the array a in place of the array o at n, keeping the
// text and separators of the elements it keeps.
func renderArray(text []byte, n *span, o, a []any) string {
	from := lcs(o, a) // the old element each new one keeps, or -1
	sepBefore := func(i int) string { return string(text[n.kids[i-1].end:n.kids[i].start]) }
	open, closing := "", ""
	if len(o) > 0 {
		open = string(text[n.start+1 : n.kids[0].start])
		closing = string(text[n.kids[len(o)-1].end : n.end-1])
	}
	var b strings.Builder
	b.WriteString("[")
	b.WriteString(open)
	for j, v := range a {
		if j > 0 {
			// Between two kept neighbours, their separator; else the one
			// at the same position in the old array.
			switch {
			case from[j] > 0 && from[j-1] == from[j]-1:
				b.WriteString(sepBefore(from[j]))
			case len(o) >= 2:
				b.WriteString(sepBefore(min(j, len(o)-1)))
			default:
				b.WriteString(", ")
			}
		}
		if from[j] >= 0 {
			s := n.kids[from[j]]
			b.Write(text[s.start:s.end])
		} else {
			b.WriteString(render(v))
		}
	}
	b.WriteString(closing)
	b.WriteString("]")
	return b.String()
}

// lcs matches the elements of a to equal elements of o, in order, as many
// as can be: from[j] is the index in o that a[j] keeps, or -1.
func lcs(o, a []any) []int {
	l := make([][]int, len(o)+1)
	for i := range l {
		l[i] = make([]int, len(a)+1)
	}
	for i := len(o) - 1; i >= 0; i-- {
		for j := len(a) - 1; j >= 0; j-- {
			if reflect.DeepEqual(o[i], a[j]) {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	from := make([]int, len(a))
	for j := range from {
		from[j] = -1
	}
	for i, j := 0, 0; i < len(o) && j < len(a); {
		switch {
		case reflect.DeepEqual(o[i], a[j]):
			from[j] = i
			i++
			j++
		case l[i+1][j] >= l[i][j+1]:
			i++
		default:
			j++
		}
	}
	return from
}

// render writes v on one line: {"a": 1, "b": [2, 3]}, keys sorted.
func render(v any) string {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = render(k) + ": " + render(v[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = render(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "null"
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// parseSpans finds where every value of the JSON text lies.
func parseSpans(text []byte) (*span, error) {
	p := &spanParser{text: text}
	n, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(text) {
		return nil, errors.New("trailing data")
	}
	return n, nil
}

type spanParser struct {
	text []byte
	i    int
}

var errSyntax = errors.New("not JSON")

func (p *spanParser) ws() {
	for p.i < len(p.text) && strings.IndexByte(" \t\r\n", p.text[p.i]) >= 0 {
		p.i++
	}
}

func (p *spanParser) value() (*span, error) {
	p.ws()
	if p.i >= len(p.text) {
		return nil, errSyntax
	}
	n := &span{start: p.i}
	switch p.text[p.i] {
	case '{':
		p.i++
		p.ws()
		if p.i < len(p.text) && p.text[p.i] == '}' {
			p.i++
			break
		}
		for {
			p.ws()
			ks := p.i
			if err := p.str(); err != nil {
				return nil, err
			}
			var key string
			if err := json.Unmarshal(p.text[ks:p.i], &key); err != nil {
				return nil, err
			}
			p.ws()
			if p.i >= len(p.text) || p.text[p.i] != ':' {
				return nil, errSyntax
			}
			p.i++
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.keys, n.keyStarts, n.kids = append(n.keys, key), append(n.keyStarts, ks), append(n.kids, v)
			p.ws()
			if p.i >= len(p.text) {
				return nil, errSyntax
			}
			p.i++
			if p.text[p.i-1] == '}' {
				break
			}
			if p.text[p.i-1] != ',' {
				return nil, errSyntax
			}
		}
		if hasDuplicates(n.keys) {
			return nil, errors.New("duplicate keys")
		}
	case '[':
		p.i++
		p.ws()
		if p.i < len(p.text) && p.text[p.i] == ']' {
			p.i++
			break
		}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, v)
			p.ws()
			if p.i >= len(p.text) {
				return nil, errSyntax
			}
			p.i++
			if p.text[p.i-1] == ']' {
				break
			}
			if p.text[p.i-1] != ',' {
				return nil, errSyntax
			}
		}
	case '"':
		if err := p.str(); err != nil {
			return nil, err
		}
	default:
		for p.i < len(p.text) && strings.IndexByte(",]} \t\r\n", p.text[p.i]) < 0 {
			p.i++
		}
	}
	n.end = p.i
	return n, nil
}

func (p *spanParser) str() error {
	if p.i >= len(p.text) || p.text[p.i] != '"' {
		return errSyntax
	}
	for p.i++; p.i < len(p.text); p.i++ {
		switch p.text[p.i] {
		case '\\':
			p.i++
		case '"':
			p.i++
			return nil
		}
	}
	return errSyntax
}

func hasDuplicates(keys []string) bool {
	s := slices.Sorted(slices.Values(keys))
	return len(slices.Compact(s)) != len(keys)
}
