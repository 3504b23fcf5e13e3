package audit

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrInvalid marks a filter or cursor the log cannot use; the message says
// what to change.
var ErrInvalid = errors.New("invalid audit query")

// Through which door a change came in.
const (
	ViaAPI     = "api"
	ViaCLI     = "cli"
	ViaConsole = "console"
)

// Entry is one recorded change.
type Entry struct {
	ID  string    `json:"id"`
	Org string    `json:"org"` // the organization whose object changed
	At  time.Time `json:"at"`
	// Actor is who made the change: "token:<token id>" or "user:<name>"
	// (a console user), as the SIM audit and alert history name callers.
	Actor string `json:"actor"`
	// ActorOrg is the organization of the actor's token or user; it differs
	// from Org when the operator organization acted on a customer.
	ActorOrg string `json:"actorOrg,omitempty"`
	Via      string `json:"via"` // api, cli or console
	Kind     string `json:"kind"`
	Object   string `json:"object,omitempty"` // the object's id or name
	Action   string `json:"action"`
	// Before and After are the object as JSON before and after the change,
	// with secrets replaced by "[redacted]"; absent when there was no
	// object before (a create) or after (a delete).
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	// Detail is a short note: the reason of a SIM state change, the
	// request path of an API change.
	Detail string `json:"detail,omitempty"`
	// Role is the least role that may read the entry: the role that may
	// read the object itself (a token's or a user's changes are for
	// admins). Empty is readable by every role.
	Role string `json:"-"`
}

// Filter narrows List. Empty fields match everything.
type Filter struct {
	Kind   string
	Object string
	Actor  string
	Action string
	From   time.Time // inclusive
	To     time.Time // exclusive
	// Roles, when set, keeps only the entries readable with one of these
	// roles (Entry.Role); an entry without a role is always kept.
	Roles []string
	// After is the Next of the previous page.
	After string
	// Newest lists newest first; the default is oldest first.
	Newest bool
	// Limit is the page size, 1 to MaxLimit; DefaultLimit when zero.
	Limit int
}

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Page is one page of entries; Next is empty on the last page.
type Page struct {
	Items []Entry `json:"items"`
	Next  string  `json:"next"`
}

// Actor is who acts in a request, put in its context by the API or the
// console after authentication.
type Actor struct {
	ID  string // "token:<id>" or "user:<name>"
	Org string // the actor's own organization
	Via string // api, cli or console
}

type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor WithActor put in ctx.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}
