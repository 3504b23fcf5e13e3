// Package config owns the hub's typed configuration: defaults, a YAML file,
// SHOPFLOOR_* environment variables and command-line flags, in rising order
// of precedence, and Validate.
//
// It must not import any other Shopfloor package.
package config
