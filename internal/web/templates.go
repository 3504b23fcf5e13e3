package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// TemplateField is a telemetry field or twin property of a template.
type TemplateField struct {
	Kind     string // telemetry or property
	Name     string
	Schema   string
	Unit     string
	Writable bool
	Range    string // "0 – 120", "" when unbounded
}

// TemplateInfo is a stored device template as the console lists it.
type TemplateInfo struct {
	ID, Name, Description string
	Fields                []TemplateField
	Commands              []string
	UpdatedAt             time.Time
}

// Templates stores device templates as their portable JSON documents.
// Errors wrap the registry sentinels.
type Templates interface {
	ListTemplates(ctx context.Context, org string) ([]TemplateInfo, error)
	ExportTemplate(ctx context.Context, org, id string) ([]byte, error)
	// ImportTemplate stores a document; replace overwrites the same id.
	ImportTemplate(ctx context.Context, org string, doc []byte, replace bool) (TemplateInfo, error)
	DeleteTemplate(ctx context.Context, org, id string) error
}

type templateRow struct {
	Name    string
	Devices int
}

type templatesData struct {
	On     bool
	Stored []TemplateInfo
	InUse  []templateRow
	Doc    string // the import form's text after an error
	Error  string
}

// maxTemplateDoc bounds an imported document.
const maxTemplateDoc = 1 << 20

// templates lists the stored templates and the template names devices
// carry, with an import form.
func (s *Server) templates(w http.ResponseWriter, r *http.Request) {
	s.templatesPage(w, r, http.StatusOK, &templatesData{})
}

func (s *Server) templatesPage(w http.ResponseWriter, r *http.Request, status int, d *templatesData) {
	org := viewerOf(r).org
	f, err := s.summary(r.Context(), org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for n, c := range f.Templates {
		d.InUse = append(d.InUse, templateRow{n, c})
	}
	sort.Slice(d.InUse, func(i, j int) bool { return d.InUse[i].Name < d.InUse[j].Name })
	d.On = s.deps.Templates != nil
	if d.On {
		if d.Stored, err = s.deps.Templates.ListTemplates(r.Context(), org); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.render(w, r, status, "templates", d)
}

func (s *Server) templatesDep(w http.ResponseWriter, r *http.Request) bool {
	if s.deps.Templates == nil {
		s.problem(w, r, http.StatusServiceUnavailable, "Device templates are not available on this hub.")
		return false
	}
	return true
}

type templateData struct {
	Saved bool
	T     TemplateInfo
	Doc   string
	Error string
}

func (s *Server) findTemplate(r *http.Request, id string) (TemplateInfo, error) {
	all, err := s.deps.Templates.ListTemplates(r.Context(), viewerOf(r).org)
	if err != nil {
		return TemplateInfo{}, err
	}
	for _, t := range all {
		if t.ID == id {
			return t, nil
		}
	}
	return TemplateInfo{}, fmt.Errorf("template %s does not exist in this organization: %w", id, registry.ErrNotFound)
}

func (s *Server) templateDetail(w http.ResponseWriter, r *http.Request) {
	if !s.templatesDep(w, r) {
		return
	}
	s.templateView(w, r, http.StatusOK, "", "")
}

// templateView shows a template with its JSON in an editor; doc and msg
// keep a rejected edit on screen.
func (s *Server) templateView(w http.ResponseWriter, r *http.Request, status int, doc, msg string) {
	id := r.PathValue("id")
	org := viewerOf(r).org
	b, err := s.deps.Templates.ExportTemplate(r.Context(), org, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.findTemplate(r, id)
	if err != nil {
		s.problem(w, r, http.StatusNotFound, sentence(err))
		return
	}
	if doc == "" {
		var pretty bytes.Buffer
		if json.Indent(&pretty, b, "", "  ") == nil {
			b = pretty.Bytes()
		}
		doc = string(b)
	}
	s.render(w, r, status, "template", templateData{T: t, Doc: doc, Error: msg, Saved: msg == "" && r.URL.Query().Get("saved") != ""})
}

func (s *Server) templateExport(w http.ResponseWriter, r *http.Request) {
	if !s.templatesDep(w, r) {
		return
	}
	id := r.PathValue("id")
	b, err := s.deps.Templates.ExportTemplate(r.Context(), viewerOf(r).org, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+slug(id)+`.template.json"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

// templateImport stores a document pasted in the form or uploaded as a file.
func (s *Server) templateImport(w http.ResponseWriter, r *http.Request) {
	if !s.templatesDep(w, r) {
		return
	}
	doc := strings.TrimSpace(r.PostFormValue("doc"))
	if f, _, err := r.FormFile("file"); err == nil {
		b, rerr := io.ReadAll(io.LimitReader(f, maxTemplateDoc+1))
		_ = f.Close()
		if rerr != nil {
			s.fail(w, r, rerr)
			return
		}
		if len(bytes.TrimSpace(b)) > 0 {
			doc = string(b)
		}
	}
	d := &templatesData{Doc: doc}
	switch {
	case doc == "":
		d.Error = "Paste a template's JSON or choose an exported .json file."
	case len(doc) > maxTemplateDoc:
		d.Error = "The document is larger than 1 MB; a template is usually a few kilobytes."
	}
	if d.Error != "" {
		s.templatesPage(w, r, http.StatusBadRequest, d)
		return
	}
	t, err := s.deps.Templates.ImportTemplate(r.Context(), viewerOf(r).org, []byte(doc), r.PostFormValue("replace") == "1")
	if err != nil {
		if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrConflict) {
			d.Error = sentence(err)
			if errors.Is(err, registry.ErrConflict) {
				d.Error += " Tick “Replace a template with the same id” to overwrite it."
			}
			s.templatesPage(w, r, http.StatusBadRequest, d)
			return
		}
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/templates/"+t.ID, http.StatusSeeOther)
}

// templateSave replaces a template with the edited document; the document's
// id, when given, must be the template's.
func (s *Server) templateSave(w http.ResponseWriter, r *http.Request) {
	if !s.templatesDep(w, r) {
		return
	}
	id := r.PathValue("id")
	doc := r.PostFormValue("doc")
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		s.templateView(w, r, http.StatusBadRequest, doc, "The document is not valid JSON: "+err.Error()+".")
		return
	}
	if got, ok := m["id"].(string); ok && got != id {
		s.templateView(w, r, http.StatusBadRequest, doc, "The document's id is "+got+" but this is template "+id+". Import it as a new template instead.")
		return
	}
	m["id"] = id
	b, _ := json.Marshal(m)
	if _, err := s.deps.Templates.ImportTemplate(r.Context(), viewerOf(r).org, b, true); err != nil {
		if errors.Is(err, registry.ErrInvalid) {
			s.templateView(w, r, http.StatusBadRequest, doc, sentence(err))
			return
		}
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/templates/"+id+"?saved=1", http.StatusSeeOther)
}

func (s *Server) templateDelete(w http.ResponseWriter, r *http.Request) {
	if !s.templatesDep(w, r) {
		return
	}
	if err := s.deps.Templates.DeleteTemplate(r.Context(), viewerOf(r).org, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/templates", http.StatusSeeOther)
}
