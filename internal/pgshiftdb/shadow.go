package pgshiftdb

// MaxShadowUsersPerFlush is the most users whose shadow reads one facade
// records in pgshift.shadow_reads_by_user per flush; the reads of users
// beyond it are counted in pgshift.shadow_reads only, so that a large
// rollout costs new a bounded number of rows. The gates say how many reads
// were left out.
const MaxShadowUsersPerFlush = 10000
