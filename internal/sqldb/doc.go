// Package sqldb owns what every SQL store of the hub shares across its two
// databases: queries are written once with ? placeholders and rewritten for
// PostgreSQL's $n.
//
// It must not import any other Shopfloor package.
package sqldb
