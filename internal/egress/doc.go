// Package egress owns the hub's outbound network policy: which addresses
// webhooks, exports and any other tenant-configured HTTP target may reach.
// By default internal addresses are refused — loopback, private, carrier
// NAT, link-local (with the cloud metadata address 169.254.169.254),
// unspecified, multicast and reserved ranges, IPv6 unique-local and
// link-local, and IPv4 addresses carried in IPv6 (IPv4-mapped, NAT64,
// 6to4) — and an operator allow-list of CIDR ranges opens what a site needs.
//
// The check runs on the address actually dialed, after DNS resolution, for
// every connection including each redirect, so a name that resolves (or
// later rebinds) to an internal address is refused. Client builds the
// *http.Client that enforces it; Describe turns a request's error into
// words a tenant may read, without the resolved addresses, ports or
// resolver that would let a tenant map the hub's network.
//
// It must not import any other Shopfloor package.
package egress
