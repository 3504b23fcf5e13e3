package registry

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. internal/api maps them to HTTP status codes.
var (
	ErrNotFound     = errors.New("not found")      // 404; also for another tenant's ids
	ErrConflict     = errors.New("already exists") // 409
	ErrInvalid      = errors.New("invalid")        // 400
	ErrForbidden    = errors.New("forbidden")      // 403: role too low
	ErrUnauthorized = errors.New("unauthorized")   // 401: unknown/expired token
)

// Role of an API token or user inside one organization.
type Role string

const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleViewer   Role = "viewer"
)

// Org is a tenant. The operator organization (Parent == "") is created at
// first start; it creates customer organizations (Parent == operator id).
type Org struct {
	ID            string        `json:"id"`
	Name          string        `json:"name"`
	Parent        string        `json:"parent,omitempty"`
	Retention     time.Duration `json:"-"`
	RetentionDays int           `json:"retentionDays"`
	CreatedAt     time.Time     `json:"createdAt"`
}

// Principal is the authenticated caller of the API.
type Principal struct {
	TokenID string
	Org     string // organization the token is scoped to
	Role    Role
	// Operator is true when Org is the operator organization: it may act on
	// its customer organizations by naming them explicitly.
	Operator bool
}

// Token is an API token; only the SHA-256 hash of the secret is stored.
type Token struct {
	ID        string    `json:"id"`
	Org       string    `json:"org"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
	// Secret is set only in the response that creates the token.
	Secret string `json:"token,omitempty"`
}

type Site struct {
	ID        string            `json:"id"`
	Org       string            `json:"org"`
	Name      string            `json:"name"`
	Tags      map[string]string `json:"tags,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
}

// AuthKind says how a device authenticates.
type AuthKind string

const (
	AuthSAS      AuthKind = "sas"       // symmetric keys (default)
	AuthX509Self AuthKind = "x509_self" // self-signed client cert, by SHA-256 thumbprint
	AuthX509CA   AuthKind = "x509_ca"   // client cert issued by a CA the org registered
)

// Device ids are unique hub-wide (as in Azure IoT Hub): the MQTT client id is
// the device id and carries no organization.
type Device struct {
	ID              string            `json:"id"`
	Org             string            `json:"org"`
	Site            string            `json:"site,omitempty"`
	Template        string            `json:"template,omitempty"`
	Tags            map[string]string `json:"tags,omitempty"`
	Disabled        bool              `json:"disabled"`
	Auth            AuthKind          `json:"auth"`
	PrimaryKey      string            `json:"primaryKey,omitempty"`   // base64, 32 random bytes
	SecondaryKey    string            `json:"secondaryKey,omitempty"` // base64, 32 random bytes
	Thumbprint      string            `json:"thumbprint,omitempty"`   // hex SHA-256 of the DER cert, for x509_self
	EnrollmentGroup string            `json:"enrollmentGroup,omitempty"`
	CreatedAt       time.Time         `json:"createdAt"`
	UpdatedAt       time.Time         `json:"updatedAt"`
	LastError       string            `json:"lastError,omitempty"`
	LastErrorAt     *time.Time        `json:"lastErrorAt,omitempty"`
	ErrorCount      int64             `json:"errorCount"`
}

// DeviceFilter narrows List. Empty fields do not filter.
type DeviceFilter struct {
	Site     string
	Template string
	Tag      map[string]string // all must match
	Limit    int               // default 100, max 1000
	After    string            // paging cursor: the last id of the previous page
}

// DevicePatch updates only the non-nil fields.
type DevicePatch struct {
	Site     *string            `json:"site,omitempty"`
	Template *string            `json:"template,omitempty"`
	Tags     *map[string]string `json:"tags,omitempty"`
	Disabled *bool              `json:"disabled,omitempty"`
}

// EnrollmentGroup lets unknown devices register on first connect with a key
// derived as base64(HMAC-SHA256(base64decode(groupKey), deviceId)).
type EnrollmentGroup struct {
	ID           string            `json:"id"`
	Org          string            `json:"org"`
	Site         string            `json:"site,omitempty"`
	Template     string            `json:"template,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	PrimaryKey   string            `json:"primaryKey,omitempty"`
	SecondaryKey string            `json:"secondaryKey,omitempty"`
	Disabled     bool              `json:"disabled"`
	CreatedAt    time.Time         `json:"createdAt"`
}

// CACert is a certificate authority an organization registered; client
// certificates it issued authenticate devices of auth kind x509_ca (and
// register unknown devices zero-touch when AutoRegister is set).
type CACert struct {
	ID           string    `json:"id"`
	Org          string    `json:"org"`
	Name         string    `json:"name"`
	PEM          string    `json:"pem"`
	Thumbprint   string    `json:"thumbprint"`
	AutoRegister bool      `json:"autoRegister"`
	Site         string    `json:"site,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
}

// ImportRow is one line of a CSV import report.
type ImportRow struct {
	Line  int    `json:"line"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

type ImportReport struct {
	Created int         `json:"created"`
	Failed  int         `json:"failed"`
	Rows    []ImportRow `json:"rows"`
}

// Store persists the registry. Implementations live in internal/store/sqlite
// and internal/store/postgres; both pass the conformance suite in
// internal/store/storetest.
//
// A Store checks only what its schema enforces (unique ids, references);
// the Service validates input and generates ids, keys and secrets. Every
// org-scoped method filters by org, so another tenant's rows are reported as
// ErrNotFound and are never changed. Each method is atomic on its own.
// Error messages are complete sentences for a plant engineer and wrap the
// sentinel errors above.
type Store interface {
	// Bootstrap inserts op unless it exists, then inserts admin (stored as
	// hash) unless op already holds an admin token. It reports whether admin
	// was inserted. Concurrent calls insert at most one admin token.
	Bootstrap(ctx context.Context, op Org, admin Token, hash string) (Org, bool, error)

	CreateOrg(ctx context.Context, o Org) error // ErrConflict when the id is taken
	GetOrg(ctx context.Context, id string) (Org, error)
	ListOrgs(ctx context.Context, parent string) ([]Org, error)
	SetRetention(ctx context.Context, id string, days int) (Org, error)

	CreateToken(ctx context.Context, t Token, hash string) error
	// TokenByHash returns the token whose secret hashes to hash, and its org.
	TokenByHash(ctx context.Context, hash string) (Token, Org, error)
	ListTokens(ctx context.Context, org string) ([]Token, error)
	DeleteToken(ctx context.Context, org, id string) error

	CreateSite(ctx context.Context, s Site) error // ErrConflict when the id is taken in s.Org
	GetSite(ctx context.Context, org, id string) (Site, error)
	ListSites(ctx context.Context, org string) ([]Site, error)
	DeleteSite(ctx context.Context, org, id string) error // ErrConflict while referenced

	// CreateDevice inserts d and its tags in one transaction: ErrConflict
	// when the id is taken in any org, ErrInvalid when d.Site is not a site
	// of d.Org.
	CreateDevice(ctx context.Context, d Device) error
	GetDevice(ctx context.Context, org, id string) (Device, error)
	// LookupDevice finds a device by id in any org with one indexed query.
	LookupDevice(ctx context.Context, id string) (Device, error)
	// ListDevices returns at most f.Limit devices of org with id > f.After,
	// in ascending byte order of id.
	ListDevices(ctx context.Context, org string, f DeviceFilter) ([]Device, error)
	CountDevices(ctx context.Context, org string) (int, error)
	UpdateDevice(ctx context.Context, org, id string, p DevicePatch, at time.Time) (Device, error)
	SetDeviceKey(ctx context.Context, org, id string, slot KeySlot, key string, at time.Time) (Device, error)
	DeleteDevice(ctx context.Context, org, id string) error
	RecordDeviceErrors(ctx context.Context, id, msg string, n int, at time.Time) error

	CreateEnrollmentGroup(ctx context.Context, g EnrollmentGroup) error // ErrConflict: ids are hub-wide
	GetEnrollmentGroup(ctx context.Context, org, id string) (EnrollmentGroup, error)
	LookupEnrollmentGroup(ctx context.Context, id string) (EnrollmentGroup, error)
	ListEnrollmentGroups(ctx context.Context, org string) ([]EnrollmentGroup, error)
	ListEnabledEnrollmentGroups(ctx context.Context) ([]EnrollmentGroup, error)
	DeleteEnrollmentGroup(ctx context.Context, org, id string) error

	CreateCACert(ctx context.Context, c CACert) error // ErrConflict on id or thumbprint (hub-wide)
	LookupCACert(ctx context.Context, id string) (CACert, error)
	ListCACerts(ctx context.Context, org string) ([]CACert, error)
	ListAllCACerts(ctx context.Context) ([]CACert, error)
	DeleteCACert(ctx context.Context, org, id string) error
}

// KeySlot names one of a device's two symmetric keys.
type KeySlot string

const (
	KeyPrimary   KeySlot = "primary"
	KeySecondary KeySlot = "secondary"
)
