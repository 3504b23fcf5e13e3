package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// pageTemplate is the layout plus one page's "content" (and fragments).
type pageTemplate struct{ t *template.Template }

var funcs = template.FuncMap{
	"ago":       ago,
	"sparkline": sparkline,
	"fmtval":    fmtVal,
	"join":      strings.Join,
	"bytes":     humanBytes,
	"bitrate":   humanBitrate,
	"list":      func(s ...string) []string { return s },
	"sub":       func(a, b int) int { return a - b },
	"pct":       func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"why":       anomalyReason,
	"tags": func(m map[string]string) string {
		parts := make([]string, 0, len(m))
		for _, k := range sortedKeys(m) {
			parts = append(parts, k+"="+m[k])
		}
		return strings.Join(parts, ";")
	},
	"query": func(kv ...string) template.URL {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				q.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(q.Encode())
	},
}

func parsePages() (map[string]*pageTemplate, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*pageTemplate{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		out[name] = &pageTemplate{t: t}
	}
	return out, nil
}

// pageData is what every page template gets.
type pageData struct {
	V     *viewer
	Title string
	Nav   string
	Data  any
}

// render executes page (or, for htmx requests that ask for a fragment, the
// template named in fragment) into a buffer first, so a template error
// never sends half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	s.renderAs(w, r, status, page, "layout.html", data)
}

func (s *Server) renderAs(w http.ResponseWriter, r *http.Request, status int, page, tmpl string, data any) {
	pt, ok := s.pages[page]
	if !ok {
		s.log.Error("console page missing", "page", page)
		http.Error(w, "page not found", http.StatusInternalServerError)
		return
	}
	pd := pageData{V: viewerOf(r), Nav: page, Data: data}
	var buf bytes.Buffer
	if err := pt.t.ExecuteTemplate(&buf, tmpl, pd); err != nil {
		s.log.Error("console template", "page", page, "template", tmpl, "err", err)
		http.Error(w, "the page could not be rendered; the hub log has the details", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// problem answers an error page (or a fragment for htmx) with a message for
// a plant engineer.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `<p class="error" role="alert">%s</p>`, template.HTMLEscapeString(msg))
		return
	}
	s.render(w, r, status, "problem", map[string]any{"Status": status, "Message": msg})
}

// fail maps a module error to a status and page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		s.problem(w, r, http.StatusNotFound, sentence(err))
	case errors.Is(err, registry.ErrInvalid):
		s.problem(w, r, http.StatusBadRequest, sentence(err))
	case errors.Is(err, registry.ErrConflict):
		s.problem(w, r, http.StatusConflict, sentence(err))
	case errors.Is(err, registry.ErrForbidden):
		s.problem(w, r, http.StatusForbidden, sentence(err))
	case errors.Is(err, ErrNotConfigured):
		s.problem(w, r, http.StatusServiceUnavailable, sentence(err))
	default:
		s.log.Error("console request failed", "path", r.URL.Path, "err", err)
		s.problem(w, r, http.StatusInternalServerError, "Something went wrong on the hub; the hub log has the details.")
	}
}

// sentence drops the sentinel suffix (": not found") registry errors carry.
func sentence(err error) string {
	msg := err.Error()
	for _, s := range []error{registry.ErrNotFound, registry.ErrInvalid, registry.ErrConflict, registry.ErrForbidden} {
		msg = strings.TrimSuffix(msg, ": "+s.Error())
	}
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	return msg
}

func (s *Server) static() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	files := http.FileServer(http.FS(sub))
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Assets change only with the binary; revalidate rather than cache
		// blindly, so an upgrade never serves stale JavaScript.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	}))
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func ago(t any) string {
	var at time.Time
	switch v := t.(type) {
	case time.Time:
		at = v
	case *time.Time:
		if v == nil {
			return "never"
		}
		at = *v
	case int64:
		if v == 0 {
			return "never"
		}
		at = time.UnixMilli(v)
	default:
		return ""
	}
	if at.IsZero() {
		return "never"
	}
	d := time.Since(at)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h ago"
	}
	return at.UTC().Format("2006-01-02 15:04 UTC")
}

func fmtVal(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', 6, 64)
	case bool:
		return strconv.FormatBool(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// sparkline draws values as an inline SVG polyline, so the fleet overview
// shows trends without JavaScript.
func sparkline(vals []float64) template.HTML {
	const w, h = 120.0, 24.0
	if len(vals) < 2 {
		return template.HTML(`<svg class="spark" width="120" height="24" aria-hidden="true"></svg>`)
	}
	lo, hi := vals[0], vals[0]
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	span := hi - lo
	var b strings.Builder
	for i, v := range vals {
		x := w * float64(i) / float64(len(vals)-1)
		y := h - 2
		if span > 0 {
			y = h - 2 - (h-4)*(v-lo)/span
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	return template.HTML(`<svg class="spark" width="120" height="24" viewBox="0 0 120 24" aria-hidden="true"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="` + strings.TrimSpace(b.String()) + `"/></svg>`)
}

// humanBytes prints a byte count the way a usage report does: 1.2 MB.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// humanBitrate writes bits per second the way network people read them.
func humanBitrate(bps int64) string {
	switch {
	case bps >= 1_000_000_000 && bps%1_000_000 == 0:
		return fmt.Sprintf("%g Gbit/s", float64(bps)/1e9)
	case bps >= 1_000_000:
		return fmt.Sprintf("%g Mbit/s", float64(bps)/1e6)
	case bps >= 1_000:
		return fmt.Sprintf("%g kbit/s", float64(bps)/1e3)
	}
	return fmt.Sprintf("%d bit/s", bps)
}

// anomalyReason says in plain words why a field was blamed.
func anomalyReason(r string) string {
	switch r {
	case "spike":
		return "a value far from the usual level"
	case "shift":
		return "the level moved"
	case "spread":
		return "the readings got noisier or steadier"
	case "jump":
		return "a sudden step between readings"
	case "stuck":
		return "the value stopped changing"
	case "joint":
		return "out of step with the other fields"
	}
	return r
}
