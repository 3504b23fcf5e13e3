package sqldb

import "testing"

func TestRebind(t *testing.T) {
	q := "UPDATE t SET a = ?, b = ? WHERE id = ?"
	if got := Rebind(false, q); got != q {
		t.Fatalf("sqlite: %q", got)
	}
	if got, want := Rebind(true, q), "UPDATE t SET a = $1, b = $2 WHERE id = $3"; got != want {
		t.Fatalf("postgres: %q, want %q", got, want)
	}
	if got := Rebind(true, "SELECT 1"); got != "SELECT 1" {
		t.Fatalf("no placeholders: %q", got)
	}
}
