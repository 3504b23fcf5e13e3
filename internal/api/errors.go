package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"

	"github.com/shopfloor/shopfloor/internal/actions"
	"github.com/shopfloor/shopfloor/internal/alerts"
	"github.com/shopfloor/shopfloor/internal/audit"
	"github.com/shopfloor/shopfloor/internal/command"
	"github.com/shopfloor/shopfloor/internal/export"
	"github.com/shopfloor/shopfloor/internal/jobs"
	"github.com/shopfloor/shopfloor/internal/registry"
	"github.com/shopfloor/shopfloor/internal/rules"
	"github.com/shopfloor/shopfloor/internal/template"
	"github.com/shopfloor/shopfloor/internal/twin"
)

// Body size limits. A bigger body is refused whole, before anything changes.
const (
	maxJSONBody = 1 << 20  // 1 MiB
	maxCSVBody  = 64 << 20 // 64 MiB
)

// httpError is an error with its HTTP status and machine-readable code.
type httpError struct {
	Status  int
	Code    string
	Message string
}

func (e *httpError) Error() string { return e.Message }

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func invalid(format string, args ...any) error {
	return &httpError{Status: http.StatusBadRequest, Code: "invalid", Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

// domainErrors maps each domain package's sentinel errors to an HTTP
// status: the one place where they are (the domains know nothing of HTTP).
var domainErrors = []struct {
	err    error
	status int
	code   string
}{
	{template.ErrInvalid, http.StatusBadRequest, "invalid"},
	{template.ErrNotFound, http.StatusNotFound, "not_found"},
	{template.ErrExists, http.StatusConflict, "conflict"},
	{jobs.ErrInvalid, http.StatusBadRequest, "invalid"},
	{jobs.ErrNotFound, http.StatusNotFound, "not_found"},
	{jobs.ErrFinished, http.StatusConflict, "conflict"},
	{rules.ErrInvalid, http.StatusBadRequest, "invalid"},
	{rules.ErrNotFound, http.StatusNotFound, "not_found"},
	{rules.ErrConflict, http.StatusConflict, "conflict"},
	{alerts.ErrInvalid, http.StatusBadRequest, "invalid"},
	{alerts.ErrNotFound, http.StatusNotFound, "not_found"},
	{alerts.ErrConflict, http.StatusConflict, "conflict"},
	{actions.ErrInvalid, http.StatusBadRequest, "invalid"},
	{actions.ErrNotFound, http.StatusNotFound, "not_found"},
	{export.ErrInvalid, http.StatusBadRequest, "invalid"},
	{export.ErrNotFound, http.StatusNotFound, "not_found"},
	{export.ErrConflict, http.StatusConflict, "conflict"},
	{twin.ErrInvalid, http.StatusBadRequest, "invalid"},
	{twin.ErrPrecondition, http.StatusPreconditionFailed, "precondition_failed"},
	{twin.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{twin.ErrQueueFull, http.StatusConflict, "queue_full"},
	{command.ErrOffline, http.StatusNotFound, "device_offline"},
	{command.ErrTimeout, http.StatusGatewayTimeout, "timeout"},
	{audit.ErrInvalid, http.StatusBadRequest, "invalid"},
}

// classify maps an error to status, code and the message the caller sees.
// Sentinels keep their package's message (written for a plant engineer);
// anything else is internal and its text stays in the log.
func classify(err error) (status int, code, msg string, internal bool) {
	var he *httpError
	if !errors.As(err, &he) {
		for _, d := range domainErrors {
			if errors.Is(err, d.err) {
				return d.status, d.code, err.Error(), false
			}
		}
	}
	switch {
	case he != nil:
		return he.Status, he.Code, he.Message, false
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, "not_found", err.Error(), false
	case errors.Is(err, registry.ErrConflict):
		return http.StatusConflict, "conflict", err.Error(), false
	case errors.Is(err, registry.ErrInvalid):
		return http.StatusBadRequest, "invalid", err.Error(), false
	case errors.Is(err, registry.ErrForbidden):
		return http.StatusForbidden, "forbidden", err.Error(), false
	case errors.Is(err, registry.ErrUnauthorized):
		return http.StatusUnauthorized, "unauthorized", err.Error(), false
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout", "the hub did not finish the request in time; try again or narrow the request", true
	}
	return http.StatusInternalServerError, "internal", "", true
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg, internal := classify(err)
	info := infoFrom(r.Context())
	if internal {
		if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
			// The client went away; there is nobody to answer.
			return
		}
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", info.requestID(), "err", err)
		if msg == "" {
			msg = "internal error while handling the request; the hub log has the details (request id " + info.requestID() + ")"
		}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shopfloor"`)
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Our own types always encode; this is a programming error.
		http.Error(w, `{"error":{"code":"internal","message":"could not encode the response"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// decodeJSON reads one JSON object into dst, refusing unknown fields, wrong
// types, trailing data and bodies over 1 MiB with a message that names the
// problem.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	body := http.MaxBytesReader(w, r.Body, maxJSONBody)
	dec := json.NewDecoder(body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return bodyError(err, dst)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return bodyError(err, dst)
		}
		return invalid("the request body holds more than one JSON value; send exactly one object")
	}
	return decodeObject(raw, dst)
}

// decodeObject decodes one JSON value into dst, refusing fields dst does
// not have and a null body: decoding null into a struct would leave it
// zero and, for example, create an enrollment group nobody described.
func decodeObject(raw json.RawMessage, dst any) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return invalid("the request body is null; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return bodyError(err, dst)
	}
	return nil
}

func bodyError(err error, dst any) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return invalid("the request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("the request body is cut short: the JSON ends before the object is complete")
	case errors.As(err, &mbe):
		return invalid("the request body is larger than %d bytes; send a smaller body", mbe.Limit)
	case errors.As(err, &syn):
		return invalid("the request body is not valid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalid("the request body must be a JSON object, not %s", typ.Value)
		}
		return invalid("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return invalid("unknown field %s; the fields allowed here are %s", name, strings.Join(jsonFields(dst), ", "))
	}
	return invalid("the request body could not be read: %v", err)
}

// jsonKind names a Go type the way a JSON user thinks of it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(jsonKind(t.Elem()), "a ") + " values"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct:
		return "an object"
	}
	return t.String()
}

// jsonFields lists the JSON names of dst's fields, for error messages.
func jsonFields(dst any) []string {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
