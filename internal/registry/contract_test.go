package registry_test

import (
	"context"
	"go/build"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// contract is the method set internal/api and the gateway are written
// against (notes/registry-contract.md). Changing a signature breaks this
// assertion before it breaks them.
type contract interface {
	Bootstrap(ctx context.Context, adminSecret string) (operator registry.Org, secret string, err error)
	Authenticate(ctx context.Context, secret string) (registry.Principal, error)
	CreateOrg(ctx context.Context, parent string, o registry.Org) (registry.Org, error)
	GetOrg(ctx context.Context, id string) (registry.Org, error)
	ListOrgs(ctx context.Context, parent string) ([]registry.Org, error)
	SetRetention(ctx context.Context, id string, days int) (registry.Org, error)
	CreateToken(ctx context.Context, org, name string, role registry.Role) (registry.Token, error)
	ListTokens(ctx context.Context, org string) ([]registry.Token, error)
	DeleteToken(ctx context.Context, org, id string) error
	CreateSite(ctx context.Context, org string, s registry.Site) (registry.Site, error)
	GetSite(ctx context.Context, org, id string) (registry.Site, error)
	ListSites(ctx context.Context, org string) ([]registry.Site, error)
	DeleteSite(ctx context.Context, org, id string) error
	CreateDevice(ctx context.Context, org string, d registry.Device) (registry.Device, error)
	GetDevice(ctx context.Context, org, id string) (registry.Device, error)
	ListDevices(ctx context.Context, org string, f registry.DeviceFilter) (items []registry.Device, next string, err error)
	UpdateDevice(ctx context.Context, org, id string, p registry.DevicePatch) (registry.Device, error)
	DeleteDevice(ctx context.Context, org, id string) error
	RegenerateKey(ctx context.Context, org, id, which string) (registry.Device, error)
	ImportCSV(ctx context.Context, org string, r io.Reader, progress func(done, total int)) (registry.ImportReport, error)
	CountDevices(ctx context.Context, org string) (int, error)
	LookupDevice(ctx context.Context, id string) (registry.Device, error)
	RecordDeviceError(ctx context.Context, id, msg string, at time.Time) error
	ListAllEnrollmentGroups(ctx context.Context) ([]registry.EnrollmentGroup, error)
	RegisterFromGroup(ctx context.Context, groupID, deviceID string) (registry.Device, error)
	ListAllCACerts(ctx context.Context) ([]registry.CACert, error)
	RegisterFromCA(ctx context.Context, caID, deviceID string) (registry.Device, error)
	CreateEnrollmentGroup(ctx context.Context, org string, g registry.EnrollmentGroup) (registry.EnrollmentGroup, error)
	GetEnrollmentGroup(ctx context.Context, org, id string) (registry.EnrollmentGroup, error)
	ListEnrollmentGroups(ctx context.Context, org string) ([]registry.EnrollmentGroup, error)
	DeleteEnrollmentGroup(ctx context.Context, org, id string) error
	CreateCACert(ctx context.Context, org string, c registry.CACert) (registry.CACert, error)
	ListCACerts(ctx context.Context, org string) ([]registry.CACert, error)
	DeleteCACert(ctx context.Context, org, id string) error
}

var _ contract = (*registry.Service)(nil)

// TestImports keeps the registry free of storage and other modules: it may
// import the standard library only.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("internal/registry imports %s: it may use the standard library only", imp)
		}
	}
}
