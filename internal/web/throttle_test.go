package web

import (
	"testing"
	"time"
)

func TestLoginThrottleKeys(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	l := newLoginThrottle(func() time.Time { return now })
	for i := range maxLoginFailures {
		if _, why, _ := l.reserve("Anna.K", "10.0.0.1"); why != throttledNone {
			t.Fatalf("try %d refused (%d)", i, why)
		}
	}
	if _, why, wait := l.reserve("anna.k", "10.0.0.1"); why != throttledUser || wait != loginWindow {
		t.Fatalf("sixth try: %d, wait %s; want user limit, %s", why, wait, loginWindow)
	}
	// Another address is not locked out by the guesser.
	a, why, _ := l.reserve("anna.k", "10.0.0.2")
	if why != throttledNone {
		t.Fatal("another address was throttled")
	}
	a.succeeded()
	if f := l.addr["10.0.0.2"]; f != nil {
		t.Fatalf("a successful sign-in still counts as a failure: %+v", f)
	}

	// Across names, one address is throttled after maxAddressFailures;
	// aborted tries (database failures) are refunded.
	for i := range maxAddressFailures - maxLoginFailures {
		a, why, _ := l.reserve("user-"+string(rune('a'+i)), "10.0.0.1")
		if why != throttledNone {
			t.Fatalf("name %d refused (%d)", i, why)
		}
		if i == 0 {
			a.aborted()
			if _, why, _ := l.reserve("user-a", "10.0.0.1"); why != throttledNone {
				t.Fatal("retry after an aborted try refused")
			}
		}
	}
	if _, why, _ := l.reserve("someone-new", "10.0.0.1"); why != throttledAddress {
		t.Fatalf("after %d failures from one address a new name was not throttled (%d)", maxAddressFailures, why)
	}
	if _, why, _ := l.reserve("", "10.0.0.1"); why != throttledAddress {
		t.Fatal("a token sign-in from the throttled address was not throttled")
	}
	now = now.Add(loginWindow)
	if _, why, _ := l.reserve("anna.k", "10.0.0.1"); why != throttledNone {
		t.Fatal("still throttled after the window")
	}
}
