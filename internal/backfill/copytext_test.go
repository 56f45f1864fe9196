package backfill

import (
	"bytes"
	"testing"
)

func TestLastLineKeepsTheLastRowAcrossWrites(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := &lastLine{w: &out}
	for _, p := range []string{"1\ta\n", "2\tb", "b\n3\t", "c\n"} {
		if _, err := l.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := string(l.last), "3\tc"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if got, want := out.String(), "1\ta\n2\tbb\n3\tc\n"; got != want {
		t.Errorf("passed through %q, want %q", got, want)
	}
}

func TestUnescapeCopyText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`plain`:       "plain",
		`a\tb\nc\\d`:  "a\tb\nc\\d",
		`\b\f\r\v`:    "\b\f\r\v",
		`\101\x42\x4`: "AB\x04",
		`end\`:        `end\`,
		`\q`:          "q",
	} {
		if got := unescapeCopyText([]byte(in)); got != want {
			t.Errorf("unescapeCopyText(%q) = %q, want %q", in, got, want)
		}
	}
}
