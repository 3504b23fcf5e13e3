package sqldb

import "errors"

// SQLite's extended result codes for a broken unique or primary key
// constraint (sqlite3.h: SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY).
const (
	sqliteConstraintUnique     = 2067
	sqliteConstraintPrimaryKey = 1555
)

// IsUnique reports whether err is a unique or primary key violation, on
// PostgreSQL (SQLSTATE 23505) or SQLite. It reads the drivers' typed errors
// through their methods, so this package links neither driver, and never
// the error text, which a value in the message could fake.
func IsUnique(err error) bool {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pg.SQLState() == "23505"
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		c := lite.Code()
		return c == sqliteConstraintUnique || c == sqliteConstraintPrimaryKey
	}
	return false
}
