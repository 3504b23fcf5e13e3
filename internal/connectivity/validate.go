package connectivity

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits on input.
const (
	MaxNameLen    = 63
	MaxLabelLen   = 200
	MaxListLen    = 10000 // devices in a group, groups in a slice, filters, cells
	MaxEndpoints  = 64
	maxSmallCells = 1000
	// MaxRuleBitrate is the largest slice bitrate the core can enforce:
	// SD-Core keeps a rule's app-mbr in a 32-bit integer of bit/s.
	MaxRuleBitrate = 1<<31 - 1
)

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// luhn reports whether the digit string passes the Luhn check.
func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// ValidateICCID checks an ICCID: 19 to 22 digits ending in a Luhn check digit.
func ValidateICCID(s string) error {
	switch {
	case s == "":
		return fieldErr("iccid", "is required: the 19 to 22 digits printed on the SIM card")
	case !digits(s) || len(s) < 19 || len(s) > 22:
		return fieldErr("iccid", "%q must be 19 to 22 digits", s)
	case !luhn(s):
		return fieldErr("iccid", "%q fails the Luhn check of its last digit: check for a typing error", s)
	}
	return nil
}

// ValidateIMSI checks an IMSI: exactly 15 digits.
func ValidateIMSI(field, s string) error {
	if !digits(s) || len(s) != 15 {
		return fieldErr(field, "%q must be exactly 15 digits (MCC, MNC and subscriber number)", s)
	}
	return nil
}

// ValidateIMEI checks an IMEI (15 digits with a Luhn check digit) or an
// IMEISV (16 digits, no check digit).
func ValidateIMEI(field, s string) error {
	switch {
	case digits(s) && len(s) == 16:
		return nil
	case !digits(s) || len(s) != 15:
		return fieldErr(field, "%q must be an IMEI of 15 digits or an IMEISV of 16 digits", s)
	case !luhn(s):
		return fieldErr(field, "IMEI %q fails the Luhn check of its last digit", s)
	}
	return nil
}

func validateMSISDN(s string) error {
	t := strings.TrimPrefix(s, "+")
	if s != "" && (!digits(t) || len(t) < 5 || len(t) > 15) {
		return fieldErr("msisdn", "%q must be 5 to 15 digits, optionally after a +", s)
	}
	return nil
}

func validateStaticIP(s string) error {
	if s == "" {
		return nil
	}
	if _, err := netip.ParseAddr(s); err != nil {
		return fieldErr("staticIp", "%q is not an IP address", s)
	}
	return nil
}

func validateHex(field, s string) error {
	if s == "" {
		return nil
	}
	if len(s) != 32 {
		return fieldErr(field, "must be 32 hex digits (128 bits)")
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= c && c <= 'f') {
			return fieldErr(field, "must be 32 hex digits (128 bits)")
		}
	}
	return nil
}

// CoreNameRule is the mobile core's rule for the names of device groups,
// slices and gNodeBs (SD-Core's web console refuses others with 400).
// Names entered here are checked against it, so a push never fails on a
// name.
const CoreNameRule = "^[a-zA-Z][a-zA-Z0-9-_]{1,255}$"

// ValidCoreName reports whether s matches CoreNameRule.
func ValidCoreName(s string) bool {
	if len(s) < 2 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '-' || c == '_')) {
			return false
		}
	}
	return true
}

// validateName checks the names of device groups, slices, traffic classes
// and applications: a letter, then letters, digits, - and _ (the mobile
// core's rule; the core sees organization-name, so one letter is enough
// here), at most 63.
func validateName(field, s string) error {
	if s == "" {
		return fieldErr(field, "is required: a letter followed by letters, digits, - or _ (the mobile core's rule %s)", CoreNameRule)
	}
	if len(s) > MaxNameLen {
		return fieldErr(field, "%q is longer than %d characters", s, MaxNameLen)
	}
	// One letter passes: the core sees it as org-x, which has three.
	if !ValidCoreName(s) && !(len(s) == 1 && ValidCoreName(s+"x")) {
		return fieldErr(field, "%q must be a letter followed by letters, digits, - or _ (the mobile core's rule %s)", s, CoreNameRule)
	}
	return nil
}

func validateRef(field, s string) error {
	if s == "" {
		return fieldErr(field, "is required")
	}
	if len(s) > 128 {
		return fieldErr(field, "%q is too long", s)
	}
	return nil
}

func validateSIM(m SIM) error {
	if err := ValidateICCID(m.ICCID); err != nil {
		return err
	}
	if err := ValidateIMSI("imsi", m.IMSI); err != nil {
		return err
	}
	if err := validateMSISDN(m.MSISDN); err != nil {
		return err
	}
	if len(m.Label) > MaxLabelLen {
		return fieldErr("label", "is longer than %d characters", MaxLabelLen)
	}
	if err := validateStaticIP(m.StaticIP); err != nil {
		return err
	}
	if err := validateHex("ki", m.Ki); err != nil {
		return err
	}
	return validateHex("opc", m.OPc)
}

func validateSiteNetwork(n SiteNetwork) error {
	if !digits(n.MCC) || len(n.MCC) != 3 {
		return fieldErr("mcc", "%q must be 3 digits", n.MCC)
	}
	if !digits(n.MNC) || len(n.MNC) < 2 || len(n.MNC) > 3 {
		return fieldErr("mnc", "%q must be 2 or 3 digits", n.MNC)
	}
	if r := n.IMSIRange; r != nil {
		if err := ValidateIMSI("imsiRange.first", r.First); err != nil {
			return err
		}
		if err := ValidateIMSI("imsiRange.last", r.Last); err != nil {
			return err
		}
		if r.First > r.Last {
			return fieldErr("imsiRange.last", "%s is below the first IMSI %s", r.Last, r.First)
		}
		if !strings.HasPrefix(r.First, n.MCC+n.MNC) || !strings.HasPrefix(r.Last, n.MCC+n.MNC) {
			return fieldErr("imsiRange", "the IMSIs must start with the PLMN %s%s", n.MCC, n.MNC)
		}
	}
	if len(n.SmallCells) > maxSmallCells {
		return fieldErr("smallCells", "at most %d small cells", maxSmallCells)
	}
	seen := map[string]bool{}
	for i, c := range n.SmallCells {
		f := fmt.Sprintf("smallCells[%d]", i)
		if err := validateRef(f+".id", c.ID); err != nil {
			return err
		}
		// The id is the gNodeB's name in the core.
		if !ValidCoreName(c.ID) {
			return fieldErr(f+".id", "%q must be 2 to 256 characters: a letter, then letters, digits, - or _ (the mobile core's rule for gNodeB names, %s)", c.ID, CoreNameRule)
		}
		if seen[c.ID] {
			return fieldErr(f+".id", "%q appears twice", c.ID)
		}
		seen[c.ID] = true
		if c.TAC < 1 || c.TAC > 0xFFFFFF {
			return fieldErr(f+".tac", "%d must be 1 to 16777215 (the mobile core's rule for a tracking area code: 24 bits, not 0)", c.TAC)
		}
		if c.Address == "" {
			return fieldErr(f+".address", "is required: the cell's IP address or host name")
		}
	}
	return nil
}

func validateDeviceGroup(g DeviceGroup) error {
	if err := validateName("name", g.Name); err != nil {
		return err
	}
	if err := validateRef("site", g.Site); err != nil {
		return err
	}
	if len(g.Devices) > MaxListLen {
		return fieldErr("devices", "at most %d devices per group", MaxListLen)
	}
	seen := map[string]bool{}
	for i, d := range g.Devices {
		if err := validateRef(fmt.Sprintf("devices[%d]", i), d); err != nil {
			return err
		}
		if seen[d] {
			return fieldErr(fmt.Sprintf("devices[%d]", i), "device %q appears twice", d)
		}
		seen[d] = true
	}
	ip := g.IPDomain
	if err := validateName("ipDomain.dnn", ip.DNN); err != nil {
		return err
	}
	p, err := netip.ParsePrefix(ip.Subnet)
	if err != nil || p.Masked() != p {
		return fieldErr("ipDomain.subnet", "%q must be a network such as 172.250.0.0/16", ip.Subnet)
	}
	for i, d := range ip.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fieldErr(fmt.Sprintf("ipDomain.dns[%d]", i), "%q is not an IP address", d)
		}
	}
	if ip.MTU < 576 || ip.MTU > 9000 {
		return fieldErr("ipDomain.mtu", "%d must be 576 to 9000", ip.MTU)
	}
	if g.MBRUplink <= 0 {
		return fieldErr("mbrUplink", "must be a positive bitrate in bits per second")
	}
	if g.MBRDownlink <= 0 {
		return fieldErr("mbrDownlink", "must be a positive bitrate in bits per second")
	}
	if err := validateRef("trafficClass", g.TrafficClass); err != nil {
		return err
	}
	if q := g.Quota; q != nil {
		if q.Bytes <= 0 {
			return fieldErr("quota.bytes", "must be positive")
		}
		if q.Action != "block" && q.Action != "notify" {
			return fieldErr("quota.action", "%q must be block or notify", q.Action)
		}
	}
	return nil
}

func validateTrafficClass(c TrafficClass) error {
	if err := validateName("name", c.Name); err != nil {
		return err
	}
	if c.ARP < 1 || c.ARP > 15 {
		return fieldErr("arp", "%d must be 1 (highest priority) to 15", c.ARP)
	}
	if c.QCI < 1 || c.QCI > 255 {
		return fieldErr("qci", "%d must be a QCI/5QI from 1 to 255", c.QCI)
	}
	if c.PDB < 1 || c.PDB > 10000 {
		return fieldErr("pdb", "%d must be a packet delay budget of 1 to 10000 ms", c.PDB)
	}
	if c.PELR < 1 || c.PELR > 8 {
		return fieldErr("pelr", "%d must be a loss-rate exponent from 1 to 8 (10^-1 to 10^-8)", c.PELR)
	}
	return nil
}

// ParseSD parses a slice differentiator: up to 6 hex digits.
func ParseSD(s string) (int, error) {
	if s == "" || len(s) > 6 {
		return 0, fieldErr("sd", "%q must be 1 to 6 hex digits (000000 to FFFFFF)", s)
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, fieldErr("sd", "%q must be 1 to 6 hex digits (000000 to FFFFFF)", s)
	}
	return int(v), nil
}

func validateSlice(sl Slice) error {
	if err := validateName("name", sl.Name); err != nil {
		return err
	}
	if err := validateRef("site", sl.Site); err != nil {
		return err
	}
	if sl.SST < 1 || sl.SST > 255 {
		return fieldErr("sst", "%d must be 1 to 255", sl.SST)
	}
	if _, err := ParseSD(sl.SD); err != nil {
		return err
	}
	if len(sl.DeviceGroups) > MaxListLen || len(sl.Filters) > MaxListLen {
		return fieldErr("deviceGroups", "too many entries")
	}
	seen := map[string]bool{}
	for i, g := range sl.DeviceGroups {
		f := fmt.Sprintf("deviceGroups[%d]", i)
		if err := validateRef(f, g); err != nil {
			return err
		}
		if seen[g] {
			return fieldErr(f, "%q appears twice", g)
		}
		seen[g] = true
	}
	switch sl.DefaultBehavior {
	case DenyAll, AllowAll, AllowPublic:
	default:
		return fieldErr("defaultBehavior", "%q must be DENY-ALL, ALLOW-ALL or ALLOW-PUBLIC", sl.DefaultBehavior)
	}
	prio := map[int]bool{}
	for i, fl := range sl.Filters {
		f := fmt.Sprintf("filters[%d]", i)
		if err := validateRef(f+".application", fl.Application); err != nil {
			return err
		}
		if fl.Priority < 0 || fl.Priority > 250 {
			return fieldErr(f+".priority", "%d must be 0 to 250", fl.Priority)
		}
		if prio[fl.Priority] {
			return fieldErr(f+".priority", "priority %d is used by another filter", fl.Priority)
		}
		prio[fl.Priority] = true
		if fl.Action != "allow" && fl.Action != "deny" {
			return fieldErr(f+".action", "%q must be allow or deny", fl.Action)
		}
	}
	if m := sl.MBR; m != nil {
		if m.Uplink <= 0 || m.Downlink <= 0 {
			return fieldErr("mbr", "uplink and downlink must be positive bitrates in bits per second")
		}
		// The core enforces a slice's bitrate on each rule, in a 32-bit
		// field of bits per second.
		if m.Uplink > MaxRuleBitrate || m.Downlink > MaxRuleBitrate {
			return fieldErr("mbr", "uplink and downlink must be at most %d bit/s (the mobile core's limit for a rule's bitrate, app-mbr-uplink/downlink)", int64(MaxRuleBitrate))
		}
		if m.BurstBytes < 0 {
			return fieldErr("mbr.burstBytes", "must not be negative")
		}
	}
	return nil
}

func validateApplication(a Application) error {
	if err := validateName("name", a.Name); err != nil {
		return err
	}
	p, err := netip.ParsePrefix(a.Prefix)
	if err != nil || p.Masked() != p {
		return fieldErr("prefix", "%q must be an address prefix such as 10.20.0.0/24 or 10.20.0.5/32", a.Prefix)
	}
	if len(a.Endpoints) > MaxEndpoints {
		return fieldErr("endpoints", "at most %d endpoints", MaxEndpoints)
	}
	for i, e := range a.Endpoints {
		f := fmt.Sprintf("endpoints[%d]", i)
		if e.Port < 1 || e.Port > 65535 {
			return fieldErr(f+".port", "%d must be 1 to 65535", e.Port)
		}
		if e.PortEnd != 0 && (e.PortEnd < e.Port || e.PortEnd > 65535) {
			return fieldErr(f+".portEnd", "%d must be from port %d to 65535", e.PortEnd, e.Port)
		}
		switch e.Protocol {
		case "TCP", "UDP", "ANY":
		default:
			return fieldErr(f+".protocol", "%q must be TCP, UDP or ANY", e.Protocol)
		}
	}
	return nil
}

// imsiMisfit says which field of a site's network an IMSI does not fit
// and why, or "" when it fits: a SIM served by the site must carry its
// PLMN (MCC then MNC) and, when the site sets one, fall in its IMSI range.
func imsiMisfit(n SiteNetwork, imsi string) (field, why string) {
	switch {
	case !strings.HasPrefix(imsi, n.MCC):
		return "mcc", fmt.Sprintf("IMSI %s does not start with site %q's MCC %s", imsi, n.Site, n.MCC)
	case !strings.HasPrefix(imsi[len(n.MCC):], n.MNC):
		return "mnc", fmt.Sprintf("IMSI %s does not carry site %q's PLMN %s%s (MCC %s, MNC %s)", imsi, n.Site, n.MCC, n.MNC, n.MCC, n.MNC)
	}
	if r := n.IMSIRange; r != nil && (imsi < r.First || imsi > r.Last) {
		return "imsiRange", fmt.Sprintf("IMSI %s is outside site %q's IMSI range %s to %s", imsi, n.Site, r.First, r.Last)
	}
	return "", ""
}
