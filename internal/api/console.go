package api

import "strings"

// consolePath says whether an unmatched path belongs to the web console
// rather than the API surface, which keeps answering JSON errors.
func consolePath(p string) bool {
	for _, prefix := range []string{"/api/", "/prometheus/"} {
		if strings.HasPrefix(p, prefix) {
			return false
		}
	}
	switch p {
	case "/api", "/prometheus", "/mqtt", "/metrics", "/healthz":
		return false
	}
	return true
}
