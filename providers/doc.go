// Package providers shows, and proves in its tests, that pgshift's flags
// decide the same migration stages from flag services other than a flagd
// file: go-feature-flag evaluated in process, and go-feature-flag's relay
// proxy, a flag server that a fleet of application servers shares, read
// with the OFREP provider (the OpenFeature Remote Evaluation Protocol, which
// flag services speak over HTTP).
//
// The package holds no code of its own: an application wires its provider
// into flags.NewProviderEvaluator as the examples do. It lives in a module
// of its own, github.com/pgshift/pgshift/providers, like the modules of
// OpenFeature's go-sdk-contrib, because go-feature-flag and its relay proxy
// pull in a large dependency graph that an application on flagd files
// should never download.
//
// # What the tests hold every provider to
//
// The reference cohorts (testdata/cohorts.goff.yaml, the flagd file
// flags/testdata/cohorts.flagd.json in go-feature-flag's format: testers
// 123 and 456 live; country IN or US with plan pro in shadow; 10% of
// everyone else in dualwrite; the rest off), in both flag schemes (the
// string flag pgshift-stage and the DevCycle pair write-to-new-db /
// read-from-new-db), give the same routing decisions as the flagd file; the
// 10% is within one point over 10,000 keys and a key keeps its answer; a
// configuration change reaches the decisions; a provider error or a relay
// proxy that is down keeps each user's last good decision, logs the cause
// once and counts every fallback in pgshift.flags.fallbacks. The relay
// proxy runs as a child process on a free loopback port, built from the
// module's tool directive (see internal/relayproxy).
//
// # Wiring a provider
//
// Neither go-feature-flag's in-process provider nor the OFREP provider
// reports configuration changes, so the decision cache needs a lifetime,
// flags.WithCacheTTL: a change reaches decisions within the TTL plus
// go-feature-flag's polling interval (in process, or in the relay proxy).
// The TTL also paces a flag server that is down: each user costs one failed
// request per TTL, answered from the last good decision. Give the OFREP provider a timeout
// (ofrep.WithTimeout) well below a request's budget: an evaluation is an
// HTTP request, made on the caller's path for every cache miss.
//
// go-feature-flag needs a targeting key: a request without a routing key
// gets the default stage (flags.WithDefaultStage, else
// flags.AutomaticDefault of the stages decided so far), counted as a fallback
// with cause provider_error. Its percentages hash the flag's name with the
// key, so which users fall in a 10% differs from flagd's and between flags,
// while each user's bucket stays fixed.
package providers
