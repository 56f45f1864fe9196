// Package flagtest is the reference cohort table that pgshift's flag tests
// decide against, written once for the flags package's tests and the
// providers module's: testers 123 and 456 live, country IN or US with plan
// pro in shadow, a percentage of everyone else in dualwrite, the rest off.
package flagtest

import "github.com/pgshift/pgshift/flags"

// Scheme is one of the two ways flags name a stage.
type Scheme struct {
	Name string
	Opt  flags.Option
	// Shadow is what the pro plan in IN and US gets: the boolean pair has
	// no shadow, and the cohort files leave those users off in it.
	Shadow flags.Stage
}

// Schemes are the string flag and the DevCycle boolean pair.
func Schemes() []Scheme {
	return []Scheme{
		{"string flag", flags.WithStageFlag(""), flags.StageShadow},
		{"boolean pair", flags.WithBooleanFlags("", ""), flags.StageOff},
	}
}

// Case is a user and the stage the cohorts give it.
type Case struct {
	Key   string
	Attrs map[string]any
	Want  flags.Stage
}

// RuleCases are the users the testers' and the attribute rule decide (not
// the percentage, whose buckets depend on the provider's hash), in a
// scheme whose pro users in IN and US get shadow.
func RuleCases(shadow flags.Stage) []Case {
	return []Case{
		{"123", nil, flags.StageLive},
		{"456", map[string]any{"country": "DE", "plan": "free"}, flags.StageLive},
		{"123", map[string]any{"country": "IN", "plan": "pro"}, flags.StageLive}, // testers win
		{"789", map[string]any{"country": "IN", "plan": "pro"}, shadow},
		{"5", map[string]any{"country": "US", "plan": "pro"}, shadow},
	}
}
