package cutover

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzRewrite feeds arbitrary file contents and an edit to the splicing
// writer: what it writes always decodes to the edited document, and an
// unedited document comes back byte for byte.
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		`{"a": [1, 2, {"b": "c"}], "d": {"e": null}}`,
		"{\n  \"flags\": {\"x\": {\"variants\": {\"on\": true}}}\n}\n",
		`{"if": [{"in": [{"var": "k"}, ["1"]]}, "live", "off"]}`,
		`{"a": "\u00e9\"\\", "b": [ ], "c": { }}`,
		`{"dup": 1, "dup": 2}`,
	} {
		f.Add([]byte(s), "new", 3)
	}
	f.Fuzz(func(t *testing.T, data []byte, key string, n int) {
		var doc map[string]any
		if json.Unmarshal(data, &doc) != nil || doc == nil {
			return
		}
		same, err := rewrite(data, doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseSpans(data); err == nil && string(same) != string(data) {
			t.Fatalf("an unedited document changed:\n%s\n%s", data, same)
		}
		// Edit: a key set, an array grown at its front, a value replaced.
		doc[key] = []any{float64(n), "x"}
		for k, v := range doc {
			if a, ok := v.([]any); ok && k != key {
				doc[k] = append([]any{"front"}, a...)
			}
		}
		out, err := rewrite(data, doc)
		if err != nil {
			t.Fatal(err)
		}
		var got any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("wrote invalid JSON: %v\n%s", err, out)
		}
		var want any
		b, _ := json.Marshal(doc)
		_ = json.Unmarshal(b, &want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("wrote\n%s\nwhich is not the edited document", out)
		}
	})
}
