package flags

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParseStage: a flag value either names a stage, which then prints back
// to a name that parses to the same stage, or is ErrUnknownStage.
func FuzzParseStage(f *testing.F) {
	for _, s := range append(stageNames[:], " Live ", "dual-write", "DUAL_WRITE", "", "banana", "off\x00") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := ParseStage(v)
		if err != nil {
			if !errors.Is(err, ErrUnknownStage) {
				t.Fatalf("ParseStage(%q): %v does not wrap ErrUnknownStage", v, err)
			}
			// ParseStage quotes at most 64 bytes of the value; %q turns a
			// byte into at most 4.
			if len(err.Error()) > 4*64+120 {
				t.Fatalf("ParseStage(%q): error of %d bytes echoes too much input", v, len(err.Error()))
			}
			return
		}
		if !s.Valid() {
			t.Fatalf("ParseStage(%q) = invalid %v", v, s)
		}
		back, err := ParseStage(s.String())
		if err != nil || back != s {
			t.Fatalf("ParseStage(%q) = %v, which parses back as %v, %v", v, s, back, err)
		}
	})
}

// FuzzStageFromBooleans: the boolean pair never reads from new unless new
// is written, except through the explicit option.
func FuzzStageFromBooleans(f *testing.F) {
	f.Add(false, true, false, uint8(0))
	f.Add(true, true, true, uint8(5))
	f.Fuzz(func(t *testing.T, write, read, opt bool, optStage uint8) {
		var rw *Stage
		if opt {
			s := Stage(optStage % uint8(len(stageNames)))
			rw = &s
		}
		s, ok := stageFromBooleans(write, read, rw)
		if !ok {
			if write || !read || rw != nil {
				t.Fatalf("write=%v read=%v option=%v: no stage", write, read, rw)
			}
			return
		}
		if !s.Valid() {
			t.Fatalf("write=%v read=%v: invalid stage %v", write, read, s)
		}
		if s.Plan().Authoritative == SideNew && !write && rw == nil {
			t.Fatalf("write=%v read=%v: %v reads from new, which is not written", write, read, s)
		}
	})
}

// FuzzCheckFlagFile feeds arbitrary file contents to the check that guards
// flagd: it never panics, and in what it accepts every variant the stage
// flag can give names a stage.
func FuzzCheckFlagFile(f *testing.F) {
	seed, err := os.ReadFile("testdata/cohorts.flagd.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(seed), "", "{", `{"flags":{}}`, `{"flags":{"x":{"state":"ENABLED","variants":{"a":"live"},"defaultVariant":"a"}}}`, "null", "[]"} {
		f.Add([]byte(s))
	}
	chk, err := newChecker(stringScheme(""))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		js, err := chk.check("fuzz.json", data)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.json") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if !strings.Contains(js, "flags") {
			t.Fatalf("accepted %q without flags", js)
		}
		if _, err := reachableStages(js, DefaultStageFlag); err != nil && !strings.Contains(err.Error(), "no flag") {
			t.Fatalf("accepted %q, whose stage flag can give a value that names no stage: %v", js, err)
		}
	})
}

// FuzzCacheKey: two users share a cache key only if routing key and
// attributes are equal.
func FuzzCacheKey(f *testing.F) {
	f.Add("1", "country", "IN", "2", "country", "IN")
	f.Add("1:", "a", "b", "1", ":a", "b")
	f.Fuzz(func(t *testing.T, k1, n1, v1, k2, n2, v2 string) {
		a, b := cacheKey(k1, map[string]any{n1: v1}), cacheKey(k2, map[string]any{n2: v2})
		same := k1 == k2 && n1 == n2 && v1 == v2
		if (a == b) != same {
			t.Fatalf("(%q, %q=%q) and (%q, %q=%q): keys %q and %q", k1, n1, v1, k2, n2, v2, a, b)
		}
	})
}
