package history

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/flags"
)

// Kind is what one write does.
type Kind int

// The kinds of writes. Keys are kv keys, children kc ids.
const (
	// Insert inserts kv row Keys[0] with U[0].
	Insert Kind = iota
	// Update sets v and u of kv row Keys[0] (no effect when it is absent).
	Update
	// Upsert inserts or updates kv row Keys[0].
	Upsert
	// Delete deletes kv row Keys[0]; ON DELETE CASCADE deletes its children.
	Delete
	// UpdateTwo sets v of two kv rows in one multi-row statement.
	UpdateTwo
	// SwapU sets u of two kv rows to U[0] and U[1] in two statements
	// (NULL first): swaps and reuses of the unique value.
	SwapU
	// UpsertMany upserts several kv rows in one multi-row statement.
	UpsertMany
	// ChildInsert inserts kc row Child under parent Keys[0].
	ChildInsert
	// ChildUpdate sets v of kc row Child.
	ChildUpdate
	// ChildDelete deletes kc row Child.
	ChildDelete
	// ParentChildren upserts kv row Keys[0] and then its children Children
	// (two statements).
	ParentChildren
	// NewRowsInsert inserts an ev row whose UUIDv7 key was made for the
	// call (Op.NewRows).
	NewRowsInsert
	// SerialInsert inserts an sq row whose key the authoritative server
	// makes (identity, from RETURNING); the row is Touched after the
	// statement; always OneStatement.
	SerialInsert
	// TwoStep updates kv row Keys[0], then (after Hold, on the
	// authoritative side) Keys[1], each Touched just before its statement:
	// the second row's lock is taken while the first is held.
	TwoStep
	numKinds
)

var kindNames = [...]string{"insert", "update", "upsert", "delete", "update-two", "swap-u", "upsert-many",
	"child-insert", "child-update", "child-delete", "parent-children", "newrows-insert", "serial-insert", "two-step"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// SideFault is a fault a write function injects on one side.
type SideFault int

// The side faults.
const (
	NoFault SideFault = iota
	// FailEarly returns an error before the write function's first
	// statement.
	FailEarly
	// FailLate returns an error after its last statement, before COMMIT.
	FailLate
)

func (f SideFault) String() string { return [...]string{"none", "early", "late"}[f] }

// CommitFault is what happens when the next COMMIT on a side is sent.
type CommitFault int

// The commit faults.
const (
	NoCommitFault CommitFault = iota
	// CancelAtCommit cancels the caller's context as soon as the next
	// COMMIT on the side passes the test proxy.
	CancelAtCommit
	// LoseCommitAnswer lets the next COMMIT on the side reach the server
	// and drops the server's answer; the connection is cut a moment later.
	LoseCommitAnswer
)

func (f CommitFault) String() string {
	return [...]string{"none", "cancel-at-commit", "lose-commit-answer"}[f]
}

// Op is one write of a history.
type Op struct {
	ID     int // unique in its history; the value written is Tag()
	Writer int // the goroutine that runs it, in order with its other ops
	User   int // the routing key is User's
	Kind   Kind
	Keys   []int    // kv keys
	U      []string // unique values per key; "" is NULL
	Child  int      // kc id (ChildInsert, ChildUpdate, ChildDelete)
	// Children are kc ids written under Keys[0] (ParentChildren).
	Children []int
	EvID     uuid.UUID // NewRowsInsert's key
	// OneStatement marks the op Op.OneStatement (single-statement kinds).
	OneStatement bool

	// Delay is the writer's pause before the op.
	Delay time.Duration
	// Other and Auth are faults the write function injects on the other
	// and the authoritative side.
	Other, Auth SideFault
	// Hold keeps the authoritative side's transaction open this long after
	// its statements (the rows' locks held).
	Hold time.Duration
	// CancelAfter cancels the caller's context this long after the op
	// starts; zero never.
	CancelAfter time.Duration
	// Commit is a fault at the next COMMIT on side CommitSide.
	Commit     CommitFault
	CommitSide flags.Side
}

// evU is the unique value a NewRowsInsert gives its ev row ("": NULL).
func evU(o Op) string {
	if len(o.U) == 0 {
		return ""
	}
	return o.U[0]
}

// Tag is the value v every row the op writes gets.
func (o Op) Tag() string { return fmt.Sprintf("o%d", o.ID) }

func (o Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d w%d user%d %s", o.ID, o.Writer, o.User, o.Kind)
	switch o.Kind {
	case ChildInsert:
		fmt.Fprintf(&b, " kc%d under kv%d", o.Child, o.Keys[0])
	case ChildUpdate, ChildDelete:
		fmt.Fprintf(&b, " kc%d", o.Child)
	case NewRowsInsert:
		fmt.Fprintf(&b, " ev %s", o.EvID)
		if len(o.U) > 0 {
			fmt.Fprintf(&b, " u%q", o.U)
		}
	case SerialInsert:
	default:
		fmt.Fprintf(&b, " kv%v", o.Keys)
		if len(o.U) > 0 {
			fmt.Fprintf(&b, " u%q", o.U)
		}
		if len(o.Children) > 0 {
			fmt.Fprintf(&b, " kc%v", o.Children)
		}
	}
	if o.OneStatement {
		b.WriteString(" one-statement")
	}
	if o.Delay > 0 {
		fmt.Fprintf(&b, " delay=%v", o.Delay)
	}
	if o.Other != NoFault {
		fmt.Fprintf(&b, " other-fails-%s", o.Other)
	}
	if o.Auth != NoFault {
		fmt.Fprintf(&b, " auth-fails-%s", o.Auth)
	}
	if o.Hold > 0 {
		fmt.Fprintf(&b, " hold=%v", o.Hold)
	}
	if o.CancelAfter > 0 {
		fmt.Fprintf(&b, " cancel-after=%v", o.CancelAfter)
	}
	if o.Commit != NoCommitFault {
		fmt.Fprintf(&b, " %s-on-%s", o.Commit, o.CommitSide)
	}
	return b.String()
}

// ControlKind is what a control step does.
type ControlKind int

// The control steps.
const (
	// SetStage moves User to Stage: facade 0 sees it at once, facade 1
	// Lag later.
	SetStage ControlKind = iota
	// Drain runs Repairer.Drain on the first facade's repairer.
	Drain
	// Outage makes Side's server look down for Lag: the facades'
	// connections to it are cut and new ones refused.
	Outage
	// Backfill copies old's rows to new (backfill.Run, chunks of a few
	// rows, two workers) while the writers go on, as `pgshift backfill`
	// does beside a dualwrite cohort; the controller's later steps wait for
	// it, so no user leaves the stage it started in (dualwrite, in a
	// History with Backfill) before the copy is done, as the gates want.
	Backfill
	// Verify compares both sides and enters every difference in the repair
	// log (verify.Run with Repair: `pgshift verify --repair`) while the
	// writers go on.
	Verify
	// Kill SIGKILLs the child process that runs History.ChildWriter's
	// writes (see ServeChild); its writes not begun by then never run.
	Kill
)

// Control is a step of the controller goroutine, which runs beside the
// writers.
type Control struct {
	Kind  ControlKind
	Delay time.Duration // pause before the step
	User  int
	Stage flags.Stage
	Lag   time.Duration
	Side  flags.Side
}

func (c Control) String() string {
	switch c.Kind {
	case Drain:
		return fmt.Sprintf("delay=%v drain", c.Delay)
	case Backfill:
		return fmt.Sprintf("delay=%v backfill", c.Delay)
	case Verify:
		return fmt.Sprintf("delay=%v verify --repair", c.Delay)
	case Kill:
		return fmt.Sprintf("delay=%v SIGKILL the child process", c.Delay)
	case Outage:
		return fmt.Sprintf("delay=%v %s down for %v", c.Delay, c.Side, c.Lag)
	}
	return fmt.Sprintf("delay=%v user%d -> %s (facade 1 %v later)", c.Delay, c.User, c.Stage, c.Lag)
}

// History is one run: the settings, the writes and the control steps. It
// is made from a seed by Generate, or written by hand (Templates).
type History struct {
	Seed int64
	Name string // a template's name; empty for generated histories
	// Capture writes without Touch, the capture triggers recording the rows
	// (Config.Capture); otherwise every write function Touches its rows.
	Capture      bool
	OtherTimeout time.Duration
	// Grace is the repair workers' grace, one per facade.
	Grace [2]time.Duration
	// RepairBatch is the repair workers' and catch-ups' batch, one per
	// facade (0: the default, 200). Small ones split a row's entries and a
	// user's across passes, and make a worker's batch grow over a log
	// that fills it.
	RepairBatch [2]int
	// Stages are the users' stages at the start.
	Stages []flags.Stage
	// Seeded are kv keys inserted on both sides before the writes start
	// (on old only when Backfill is set).
	Seeded []int
	// Backfill starts new without the seeded rows and every user in
	// dualwrite; a Backfill control step copies them.
	Backfill bool
	// Child runs ChildWriter's writes in a child process with a facade of
	// its own (another instance of the application), which a Kill step
	// SIGKILLs; its writes carry no commit fault (the proxy that injects
	// them is the parent's).
	Child       bool
	ChildWriter int
	Ops         []Op
	Control     []Control
}

func (h History) String() string {
	var b strings.Builder
	mode := "touch"
	if h.Capture {
		mode = "capture"
	}
	name := fmt.Sprintf("seed %d", h.Seed)
	if h.Name != "" {
		name = "template " + h.Name
	}
	seeded := "seeded"
	if h.Backfill {
		seeded = "seeded on old only (backfilled)"
	}
	fmt.Fprintf(&b, "%s: %s mode, OtherTimeout %v, repair grace %v/%v, repair batch %d/%d, %d users starting at %v, %s kv%v\n",
		name, mode, h.OtherTimeout, h.Grace[0], h.Grace[1], h.RepairBatch[0], h.RepairBatch[1], len(h.Stages), h.Stages, seeded, h.Seeded)
	if h.Child {
		fmt.Fprintf(&b, "  writer w%d runs in a child process\n", h.ChildWriter)
	}
	for _, o := range h.Ops {
		fmt.Fprintf(&b, "  op %s\n", o)
	}
	for _, c := range h.Control {
		fmt.Fprintf(&b, "  control %s\n", c)
	}
	return b.String()
}

// Keys per user: user i owns kv keys i*100 .. i*100+KeysPerUser-1, the
// children of kv key k are kc ids k*10 .. k*10+ChildrenPerKey-1, and its
// unique values are "u<i>.0" ..
const (
	KeysPerUser    = 4
	ChildrenPerKey = 2
	UniquePerUser  = 3
)

// Config shapes the generated histories and selects the fault classes and
// kinds of writes. The zero value is not useful; start from DefaultConfig,
// which enables everything.
type Config struct {
	Users   int
	Writers int
	// Ops is the number of writes per history.
	Ops int
	// Controls is the number of stage changes and drains per history.
	Controls int
	// Kinds enabled; nil is every kind.
	Kinds []Kind
	// Stages among which users move.
	Stages []flags.Stage
	// Modes: touch and/or capture.
	Touch, Capture bool

	// Fault classes and their probability per write (0 disables).
	OtherFail      float64 // the other side's write function fails early or late
	AuthFail       float64 // the authoritative side's fails early or late
	Cancel         float64 // the caller's context is cancelled at a random instant
	CancelCommit   float64 // cancelled as the COMMIT is sent
	LoseCommit     float64 // a COMMIT's answer is lost
	Hold           float64 // the authoritative side holds its locks a while
	ShortTimeout   float64 // probability that a history's OtherTimeout is 200 ms (else 1 s)
	Drains         bool    // explicit drains among the control steps
	Outages        bool    // a side looks down for a while among the control steps
	Backfill       float64 // probability that a history starts with new empty of the seeded rows and backfills them
	Verify         float64 // probability that a history runs verify --repair among its control steps
	Kill           float64 // probability that a history runs a writer in a child process and SIGKILLs it
	LateFacade     bool    // facade 1 sees stage changes a few ms late
	ShortGraceOnly bool    // repair grace 1 ms only (NewRows + Drain races)
}

// DefaultConfig is the full set: every kind, every fault class, both modes,
// small histories.
func DefaultConfig() Config {
	return Config{
		Users: 3, Writers: 5, Ops: 16, Controls: 5,
		Stages: []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive, flags.StageRampdown},
		Touch:  true, Capture: true,
		OtherFail: 0.12, AuthFail: 0.06, Cancel: 0.06, CancelCommit: 0.05, LoseCommit: 0.04, Hold: 0.15,
		ShortTimeout: 0.6, Drains: true, Outages: true, LateFacade: true, Backfill: 0.25, Verify: 0.3, Kill: 0.3,
	}
}

// Generate makes the history of a seed under cfg. The same seed and cfg
// always give the same history.
func Generate(seed int64, cfg Config) History {
	r := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	h := History{Seed: seed}
	switch {
	case cfg.Touch && cfg.Capture:
		h.Capture = r.IntN(2) == 1
	default:
		h.Capture = cfg.Capture
	}
	h.OtherTimeout = time.Second
	if r.Float64() < cfg.ShortTimeout {
		h.OtherTimeout = 200 * time.Millisecond
	}
	graces := []time.Duration{time.Millisecond, 5 * time.Millisecond, 30 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond}
	for i := range h.Grace {
		h.Grace[i] = graces[r.IntN(len(graces))]
		if cfg.ShortGraceOnly {
			h.Grace[i] = time.Millisecond
		}
	}
	pickStage := func() flags.Stage { return cfg.Stages[r.IntN(len(cfg.Stages))] }
	for range cfg.Users {
		h.Stages = append(h.Stages, pickStage())
	}
	for u := range cfg.Users {
		for i := range KeysPerUser {
			if r.IntN(2) == 0 {
				h.Seeded = append(h.Seeded, u*100+i)
			}
		}
	}
	kinds := cfg.Kinds
	if kinds == nil {
		for k := range numKinds {
			kinds = append(kinds, k)
		}
	}
	for i := range cfg.Ops {
		w := r.IntN(cfg.Writers)
		o := Op{ID: i + 1, Writer: w, User: w % cfg.Users, Kind: kinds[r.IntN(len(kinds))]}
		key := func() int { return o.User*100 + r.IntN(KeysPerUser) }
		uval := func() string {
			if r.IntN(5) == 0 {
				return ""
			}
			return fmt.Sprintf("u%d.%d", o.User, r.IntN(UniquePerUser))
		}
		two := func() []int {
			a := r.IntN(KeysPerUser)
			b := (a + 1 + r.IntN(KeysPerUser-1)) % KeysPerUser
			return []int{o.User*100 + a, o.User*100 + b}
		}
		child := func(k int) int { return k*10 + r.IntN(ChildrenPerKey) }
		single := false
		switch o.Kind {
		case Insert, Update, Upsert:
			o.Keys, o.U, single = []int{key()}, []string{uval()}, true
		case Delete:
			o.Keys, single = []int{key()}, true
		case UpdateTwo:
			o.Keys, single = two(), true
		case TwoStep:
			o.Keys = two()
		case SwapU:
			o.Keys = two()
			a, b := r.IntN(UniquePerUser), r.IntN(UniquePerUser)
			if a == b {
				b = (a + 1) % UniquePerUser
			}
			o.U = []string{fmt.Sprintf("u%d.%d", o.User, a), fmt.Sprintf("u%d.%d", o.User, b)}
		case UpsertMany:
			o.Keys, single = two(), true
			o.U = []string{uval(), uval()}
			if o.U[0] == o.U[1] {
				o.U[1] = ""
			}
		case ChildInsert:
			o.Keys = []int{key()}
			o.Child, single = child(o.Keys[0]), true
		case ChildUpdate, ChildDelete:
			o.Keys = []int{key()}
			o.Child, single = child(o.Keys[0]), true
		case ParentChildren:
			o.Keys, o.U = []int{key()}, []string{uval()}
			for c := range ChildrenPerKey {
				o.Children = append(o.Children, o.Keys[0]*10+c)
			}
		case NewRowsInsert:
			o.EvID = uuidV7(r)
			if v := uval(); v != "" {
				// A unique value of ev's own: two users' NewRows
				// inserts under two authorities may meet on it.
				o.U = []string{"e" + v}
			}
			single = true
		case SerialInsert:
			o.OneStatement = true
		}
		if single && r.IntN(2) == 0 {
			o.OneStatement = true
		}
		if r.IntN(3) == 0 {
			o.Delay = time.Duration(r.IntN(20)) * time.Millisecond
		}
		if r.Float64() < cfg.OtherFail {
			o.Other = SideFault(1 + r.IntN(2))
		}
		if r.Float64() < cfg.AuthFail {
			o.Auth = FailEarly
			if !o.OneStatement && r.IntN(2) == 0 {
				// After a OneStatement write's statement its COMMIT has
				// gone: an error then would misuse the API.
				o.Auth = FailLate
			}
		}
		if r.Float64() < cfg.Hold && !o.OneStatement {
			o.Hold = time.Duration(20+r.IntN(250)) * time.Millisecond
		}
		if r.Float64() < cfg.Cancel {
			o.CancelAfter = time.Duration(1+r.IntN(8000)) * time.Microsecond
		}
		switch x := r.Float64(); {
		case x < cfg.CancelCommit:
			o.Commit = CancelAtCommit
		case x < cfg.CancelCommit+cfg.LoseCommit:
			o.Commit = LoseCommitAnswer
		}
		o.CommitSide = flags.Side(r.IntN(2))
		h.Ops = append(h.Ops, o)
	}
	for range cfg.Controls {
		c := Control{Kind: SetStage, Delay: time.Duration(r.IntN(60)) * time.Millisecond, User: r.IntN(cfg.Users), Stage: pickStage()}
		if cfg.LateFacade {
			c.Lag = time.Duration(1+r.IntN(5)) * time.Millisecond
		}
		switch x := r.IntN(8); {
		case cfg.Drains && x < 2:
			c = Control{Kind: Drain, Delay: c.Delay}
		case cfg.Outages && x == 2:
			c = Control{Kind: Outage, Delay: c.Delay, Side: flags.Side(r.IntN(2)), Lag: time.Duration(50+r.IntN(250)) * time.Millisecond}
		}
		h.Control = append(h.Control, c)
	}
	tools(seed, cfg, &h)
	// From a stream of its own, so that the rest of a seed's history is
	// what it was before histories had a batch.
	rb := rand.New(rand.NewPCG(uint64(seed), 0xb5ad4eceda1ce2a9))
	for i := range h.RepairBatch {
		h.RepairBatch[i] = []int{1, 3, 0, 0}[rb.IntN(4)]
	}
	return h
}

// tools adds the operator tools that run beside the writers: backfill
// (with the seeded rows on old only) and verify --repair. Their draws come
// from a stream of their own, so a seed's writes and other control steps
// are those it had before the tools were added.
func tools(seed int64, cfg Config, h *History) {
	r := rand.New(rand.NewPCG(uint64(seed), 0xda942042e4dd58b5))
	backfill, verify, kill := r.Float64() < cfg.Backfill, r.Float64() < cfg.Verify, r.Float64() < cfg.Kill
	at, killAt := r.IntN(len(h.Control)+1), r.IntN(len(h.Control)+1)
	delay := time.Duration(r.IntN(20)) * time.Millisecond
	writer, killDelay := r.IntN(max(1, cfg.Writers)), time.Duration(20+r.IntN(400))*time.Millisecond
	if kill && slices.ContainsFunc(h.Ops, func(o Op) bool { return o.Writer == writer }) {
		h.Child, h.ChildWriter = true, writer
		for i := range h.Ops {
			if h.Ops[i].Writer == writer {
				h.Ops[i].Commit = NoCommitFault
			}
		}
		h.Control = slices.Insert(h.Control, killAt, Control{Kind: Kill, Delay: killDelay})
	}
	if verify {
		h.Control = slices.Insert(h.Control, min(at, len(h.Control)), Control{Kind: Verify, Delay: delay})
	}
	if backfill && len(h.Seeded) > 0 {
		h.Backfill = true
		for i := range h.Stages {
			h.Stages[i] = flags.StageDualWrite
		}
		h.Control = slices.Insert(h.Control, 0, Control{Kind: Backfill, Delay: delay})
	}
}

// uuidV7 is a UUIDv7 whose bits come from r: keys the history owns, the
// same on every replay.
func uuidV7(r *rand.Rand) uuid.UUID {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(r.UintN(256))
	}
	ms := uint64(1_700_000_000_000) + r.Uint64N(1<<30)
	for i := range 6 {
		u[i] = byte(ms >> (8 * (5 - i)))
	}
	u[6] = u[6]&0x0f | 0x70
	u[8] = u[8]&0x3f | 0x80
	return u
}
