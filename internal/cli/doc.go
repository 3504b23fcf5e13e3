// Package cli owns the `shopfloor` command line over the hub's REST API:
// the root command with its connection settings (--url, --token, --org from
// flags, SHOPFLOOR_* environment variables or ~/.config/shopfloor/config.yaml),
// the HTTP client other commands reuse (Client, ClientFrom), and the
// org, token, site, device and query commands.
//
// It talks to the hub only over HTTP. It may import internal/registry and internal/quota for
// their JSON types; it must not import the api, store, tsdb, gateway, bus or app
// packages.
package cli
