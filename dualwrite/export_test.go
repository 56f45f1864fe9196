package dualwrite

import "github.com/pgshift/pgshift/flags"

// WithBeforeCommit returns c with a hook that runs before each transaction
// of a write sends its COMMIT, with the side, whether it is authoritative,
// and the server process id of its connection.
func WithBeforeCommit(c Config, fn func(side flags.Side, authoritative bool, pid uint32)) Config {
	c.hooks = &hooks{beforeCommit: fn}
	return c
}
