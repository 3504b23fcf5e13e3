package sqldb

import (
	"strconv"
	"strings"
)

// Rebind returns query with its ? placeholders numbered $1, $2, … when
// postgres is true, and unchanged otherwise (SQLite takes ?). Queries must
// not contain a literal question mark.
func Rebind(postgres bool, query string) string {
	if !postgres {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}
