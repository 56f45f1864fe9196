package pgshiftdb

// (Written by hand, beside the sqlc-generated DurabilitySettings.)

// Durable reports whether the server keeps every commit through a crash of
// it: fsync on and synchronous_commit not off ("local", "remote_write",
// "remote_apply" and "on" all wait for the commit's WAL to reach disk). The
// guarantee needs it on both sides: the facade forgets a write's repair-log
// records once both sides committed it, so a commit a crash loses is
// repaired by nothing.
func (s DurabilitySettingsRow) Durable() bool {
	return s.Fsync != "off" && s.SynchronousCommit != "off"
}
