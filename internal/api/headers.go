package api

import "net/http"

// hstsMaxAge is how long a browser that reached the hub over HTTPS keeps
// using HTTPS for it: one year, the usual value. It is sent only on HTTPS
// responses; includeSubDomains is left out because the hub does not own
// its domain's other hosts.
const hstsMaxAge = "max-age=31536000"

// securityHeaders sets the headers every response carries: nosniff, so a
// browser never runs a JSON body or an asset as another type, and HSTS on
// HTTPS.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", hstsMaxAge)
		}
		next.ServeHTTP(w, r)
	})
}
