package rules

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The REST API and the console save rules through the same Service: an
// update carries the disabled flag (the API's adapter used to call Enable
// and then Disable, dropping Enable's error), and a dry run longer than 31
// days is refused for both.
func TestServiceUpdateAndDryRunLimit(t *testing.T) {
	ctx := context.Background()
	store, err := NewStore(ctx, StoreConfig{DB: sqliteDB(t), Driver: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(ServiceConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	r, err := svc.Create(ctx, Rule{Org: "acme", Name: "hot", Condition: "temperature > 80"})
	if err != nil {
		t.Fatal(err)
	}
	r.Disabled, r.Condition = true, "temperature > 85"
	out, err := svc.Update(ctx, r)
	if err != nil || !out.Disabled || out.Condition != "temperature > 85" {
		t.Fatalf("disable by update: %+v %v", out, err)
	}
	r.Disabled = false
	if out, err = svc.Update(ctx, r); err != nil || out.Disabled {
		t.Fatalf("enable by update: %+v %v", out, err)
	}
	if got, _ := svc.Get(ctx, "acme", r.ID); got.Disabled {
		t.Fatal("the stored rule is still disabled")
	}
	r.ID = "nosuch"
	if _, err := svc.Update(ctx, r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing rule: %v", err)
	}
	now := time.Now()
	if _, err := svc.DryRun(ctx, out, now.Add(-32*24*time.Hour), now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a 32-day dry run: %v", err)
	}
}
