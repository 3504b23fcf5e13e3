package sdcore

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// The web console's own checks, as its handlers apply them
// (configapi/validators.go, the slice and device group helpers, and the
// subscriber handlers). The fake core in sdcoretest refuses with them, and
// the adapter's tests run every payload through them, so a payload that
// passes here is one the real core takes.

// NamePattern is the core's rule for device group, slice and gNodeB names.
const NamePattern = "^[a-zA-Z][a-zA-Z0-9-_]{1,255}$"

var nameRE = regexp.MustCompile(NamePattern)

// ErrInvalid wraps every refusal of these checks.
var ErrInvalid = errors.New("invalid for the SD-Core web console")

// ValidName reports whether the core takes name for a device group, slice
// or gNodeB.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// ValidTAC reports whether the core takes tac for a gNodeB.
func ValidTAC(tac int32) bool { return tac >= 1 && tac <= 16777215 }

// knownUnit reports whether the core converts unit (any case; empty
// counts as bps).
func knownUnit(unit string) bool {
	switch lower(unit) {
	case "", "bps", "kbps", "mbps", "gbps":
		return true
	}
	return false
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
}

// ValidateDeviceGroup applies the core's checks of POST/PUT
// /config/v1/device-group/{name}.
func ValidateDeviceGroup(name string, g DeviceGroup) error {
	if !ValidName(name) {
		return invalid("invalid Device Group name %s. Name needs to match the following regular expression: %s", name, NamePattern)
	}
	if g.IMSIs == nil {
		return invalid("device group %s: imsis is required (an empty list is fine)", name)
	}
	for _, d := range append(g.IPDomains, derefDomain(g.IPDomainExpanded)...) {
		if d.QoS == nil {
			continue
		}
		if !knownUnit(d.QoS.BitrateUnit) {
			return invalid("device group %s: unknown bitrate-unit %q", name, d.QoS.BitrateUnit)
		}
		if tc := d.QoS.TrafficClass; tc != nil {
			if err := validateClass(tc); err != nil {
				return invalid("device group %s: %v", name, err)
			}
		}
	}
	return nil
}

func derefDomain(d *IPDomain) []IPDomain {
	if d == nil {
		return nil
	}
	return []IPDomain{*d}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// validateClass applies traffic-class-info.yaml's required fields and
// ranges that the core depends on (ARP and PELR feed the QoS rules).
func validateClass(tc *TrafficClass) error {
	switch {
	case tc.Name == "":
		return errors.New("traffic-class.name is required")
	case tc.QCI < 1:
		return errors.New("traffic-class.qci is required")
	case tc.ARP < 1 || tc.ARP > 15:
		return fmt.Errorf("traffic-class.arp %d must be 1 to 15", tc.ARP)
	case tc.PELR < 1 || tc.PELR > 8:
		return fmt.Errorf("traffic-class.pelr %d must be 1 to 8", tc.PELR)
	case tc.PDB < 0:
		return fmt.Errorf("traffic-class.pdb %d must not be negative", tc.PDB)
	}
	return nil
}

// ValidateSlice applies the core's checks of POST/PUT
// /config/v1/network-slice/{name}.
func ValidateSlice(name string, s Slice) error {
	if !ValidName(name) {
		return invalid("invalid Network Slice name %s. Name needs to match the following regular expression: %s", name, NamePattern)
	}
	if s.ID.SST == "" {
		return invalid("missing SST in slice %s", name)
	}
	if _, err := strconv.ParseUint(s.ID.SST, 10, 32); err != nil {
		return invalid("could not parse SST %s", s.ID.SST)
	}
	for _, g := range s.SiteInfo.GNodeBs {
		if !ValidName(g.Name) {
			return invalid("invalid gNB name `%s` in Network Slice %s", g.Name, name)
		}
		if !ValidTAC(g.TAC) {
			return invalid("invalid TAC %d for gNB %s in Network Slice %s", g.TAC, g.Name, name)
		}
	}
	for _, r := range s.Rules {
		if r.TrafficClass == nil {
			return invalid("TrafficClass (QCI, ARP) required but not provided, network slice NOT configured in the network")
		}
		if err := validateClass(r.TrafficClass); err != nil {
			return invalid("slice %s rule %s: %v", name, r.Name, err)
		}
		if !knownUnit(r.BitrateUnit) {
			return invalid("slice %s rule %s: unknown bitrate-unit %q", name, r.Name, r.BitrateUnit)
		}
		if r.PortStart < 0 || r.PortEnd > 65535 || r.PortEnd < r.PortStart {
			return invalid("slice %s rule %s: ports %d-%d", name, r.Name, r.PortStart, r.PortEnd)
		}
	}
	return nil
}

// ValidateSubscriber applies the core's checks of POST and PUT
// /api/subscriber/imsi-{imsi}.
func ValidateSubscriber(s Subscriber) error {
	if s.OPc == "" || s.Key == "" || s.SequenceNumber == "" {
		return invalid("Missing required authentication data: OPc, Key and Sequence number must be provided")
	}
	return nil
}
