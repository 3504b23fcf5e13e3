package api

// Registrations lists what New registered with the mux: each route as
// "METHOD /pattern" and each mount as its pattern, with the documented
// operations under the mount.
func Registrations(s *Server) (routes []string, mounts map[string][]string) {
	mounts = map[string][]string{}
	for _, rt := range s.routes {
		routes = append(routes, rt.Method+" "+rt.Pattern)
	}
	for _, mt := range s.mounts {
		for _, d := range mt.Docs {
			mounts[mt.Pattern] = append(mounts[mt.Pattern], d.Method+" "+d.Pattern)
		}
	}
	return routes, mounts
}
