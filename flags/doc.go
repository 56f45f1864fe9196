// Package flags decides, per request, which migration stage the user in the
// context is in, from OpenFeature feature flags.
package flags
