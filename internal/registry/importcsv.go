package registry

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxImportRows bounds one CSV import; larger fleets are imported in parts.
const MaxImportRows = 100_000

// importColumns are the columns ImportCSV understands; only id is required.
var importColumns = []string{"id", "site", "template", "tags", "auth", "thumbprint"}

type importRecord struct {
	line   int
	fields []string
	err    error // the line could not be parsed as CSV
}

// ImportCSV creates devices in org from CSV with the header
// id,site,template,tags,auth,thumbprint (columns in any order; tags as
// k=v;k=v). Each row is created in its own transaction, so a bad row never
// half-creates a device and never stops the others; the report lists every
// row with its line number and error. Duplicate ids within the file and ids
// already registered are reported per row. An error is returned only when
// the file as a whole cannot be used or the database fails; the report then
// covers the rows done so far.
func (s *Service) ImportCSV(ctx context.Context, org string, r io.Reader, progress func(done, total int)) (ImportReport, error) {
	rep := ImportReport{Rows: []ImportRow{}}
	if _, err := s.store.GetOrg(ctx, org); err != nil {
		return rep, err
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return rep, fmt.Errorf("the CSV file is empty: its first line must be the header %s: %w", strings.Join(importColumns, ","), ErrInvalid)
	}
	if err != nil {
		return rep, fmt.Errorf("the CSV header cannot be read (%v): its first line must be %s: %w", err, strings.Join(importColumns, ","), ErrInvalid)
	}
	col, err := importHeader(header)
	if err != nil {
		return rep, err
	}
	var recs []importRecord
	for {
		fields, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			recs = append(recs, importRecord{line: pe.StartLine, err: fmt.Errorf("the line is not valid CSV (%v): check its quotes: %w", pe.Err, ErrInvalid)})
		} else if err != nil {
			return rep, fmt.Errorf("read the CSV file: %w", err)
		} else {
			// FieldPos only after a successful Read: after a parse error
			// the record may have no field 0, and FieldPos panics on it
			// (an unterminated quote on the last line did, found by
			// FuzzAPIBodies).
			line, _ := cr.FieldPos(0)
			recs = append(recs, importRecord{line: line, fields: fields})
		}
		if len(recs) > MaxImportRows {
			return rep, fmt.Errorf("the CSV file has more than %d rows: split it into smaller files: %w", MaxImportRows, ErrInvalid)
		}
	}

	total := len(recs)
	seen := make(map[string]int, total) // device id -> first line
	refs := refChecker{}
	for i, rec := range recs {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("import stopped after %d of %d rows: %w", i, total, err)
		}
		row := ImportRow{Line: rec.line}
		err := rec.err
		if err == nil {
			var d Device
			d, err = importDevice(rec.fields, col, len(header))
			row.ID = d.ID
			if err == nil && d.ID != "" {
				if first, dup := seen[d.ID]; dup {
					err = fmt.Errorf("device id %q appears more than once in the file (first on line %d): keep one row per device: %w", d.ID, first, ErrConflict)
				} else {
					seen[d.ID] = rec.line
				}
			}
			if err == nil {
				err = s.prepareDevice(ctx, org, &d, refs)
			}
			if err == nil {
				err = s.store.CreateDevice(ctx, d)
			}
		}
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
			// Not the row's fault: the database failed. Stop rather than
			// report every remaining row as failed.
			return rep, fmt.Errorf("import stopped at line %d: %w", rec.line, err)
		}
		if err != nil {
			row.Error = err.Error()
			rep.Failed++
		} else {
			rep.Created++
		}
		rep.Rows = append(rep.Rows, row)
		if progress != nil {
			progress(i+1, total)
		}
	}
	s.log.Info("devices imported from CSV", "org", org, "created", rep.Created, "failed", rep.Failed)
	return rep, nil
}

// importHeader maps column names to their index.
func importHeader(header []string) (map[string]int, error) {
	col := make(map[string]int, len(header))
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // spreadsheet programs prepend a byte-order mark
		}
		h = strings.ToLower(strings.TrimSpace(h))
		known := false
		for _, c := range importColumns {
			known = known || h == c
		}
		if !known {
			if i == 0 && len(header) == 1 && strings.Contains(h, ";") {
				return nil, fmt.Errorf("the CSV header %q is separated by semicolons: separate columns with commas (%s): %w", header[0], strings.Join(importColumns, ","), ErrInvalid)
			}
			return nil, fmt.Errorf("column %q in the CSV header is unknown: use %s: %w", h, strings.Join(importColumns, ","), ErrInvalid)
		}
		if _, dup := col[h]; dup {
			return nil, fmt.Errorf("column %q appears twice in the CSV header: %w", h, ErrInvalid)
		}
		col[h] = i
	}
	if _, ok := col["id"]; !ok {
		return nil, fmt.Errorf("the CSV header has no id column: its first line must be %s: %w", strings.Join(importColumns, ","), ErrInvalid)
	}
	return col, nil
}

// importDevice turns one CSV row into a device to validate.
func importDevice(fields []string, col map[string]int, width int) (Device, error) {
	get := func(name string) string {
		if i, ok := col[name]; ok && i < len(fields) {
			return strings.TrimSpace(fields[i])
		}
		return ""
	}
	d := Device{ID: get("id"), Site: get("site"), Template: get("template"), Auth: AuthKind(get("auth")), Thumbprint: get("thumbprint")}
	if len(fields) != width {
		return d, fmt.Errorf("the line has %d fields but the header has %d: %w", len(fields), width, ErrInvalid)
	}
	tags, err := parseTags(get("tags"))
	if err != nil {
		return d, err
	}
	d.Tags = tags
	return d, nil
}

// parseTags reads "k=v;k=v". Empty parts (a trailing ;) are ignored.
func parseTags(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	tags := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("tags %q are invalid: write them as key=value;key=value: %w", s, ErrInvalid)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("tag %q is given twice: %w", k, ErrInvalid)
		}
		tags[k] = v
	}
	return tags, nil
}
