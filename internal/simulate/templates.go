package simulate

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// TemplateSpec is a device template as the simulator creates it: the
// telemetry a kind of machine sends. The hub refuses a device that names a
// template it does not have, so the fleet creates its kinds' templates
// before its devices.
type TemplateSpec struct {
	ID         string          `json:"id"`
	Name       string          `json:"name,omitempty"`
	Telemetry  []TemplateField `json:"telemetry"`
	Properties []TemplateField `json:"properties"`
	Commands   []any           `json:"commands"`
}

// TemplateField is one declared telemetry value.
type TemplateField struct {
	Name   string `json:"name"`
	Schema string `json:"schema"`
}

// TemplateSpec describes the telemetry this kind of machine sends, read
// from one sample of its model.
func (k Kind) TemplateSpec() (TemplateSpec, error) {
	m, err := NewModel(k, 1, 0)
	if err != nil {
		return TemplateSpec{}, err
	}
	sample := m.Next(time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC))
	spec := TemplateSpec{ID: k.Template(), Name: "Simulated " + string(k), Telemetry: []TemplateField{}, Properties: []TemplateField{}, Commands: []any{}}
	for name, v := range sample {
		schema := "double"
		switch v.(type) {
		case string:
			schema = "string"
		case bool:
			schema = "boolean"
		}
		spec.Telemetry = append(spec.Telemetry, TemplateField{Name: name, Schema: schema})
	}
	sort.Slice(spec.Telemetry, func(i, j int) bool { return spec.Telemetry[i].Name < spec.Telemetry[j].Name })
	return spec, nil
}

// EnsureTemplate creates the template; one that exists already is kept as
// it is (an operator may have edited it).
func (c *Client) EnsureTemplate(ctx context.Context, spec TemplateSpec) error {
	status, body, err := c.do(ctx, http.MethodPost, "/api/v1/templates", spec)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusCreated, http.StatusOK, http.StatusConflict:
		return nil
	}
	return c.fail(fmt.Sprintf("create template %s", spec.ID), status, body)
}
