package connectivity

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SIMCSVColumns are the columns a SIM CSV file may have, in any order;
// iccid and imsi are required.
var SIMCSVColumns = []string{"iccid", "imsi", "msisdn", "label", "ki", "opc"}

// ParseSIMCSV reads a SIM batch as CSV: a header row naming the columns
// (SIMCSVColumns, any case and order), then one SIM per row. A header
// without iccid or imsi, or with a column it does not know, is refused as
// a whole. A row that is not valid CSV becomes a row carrying the reason
// (SIMRow.Invalid), so the import fails that row alone.
func ParseSIMCSV(r io.Reader) ([]SIMRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fieldErr("header", "the CSV body is empty; send a header row %s and one SIM per row", strings.Join(SIMCSVColumns, ","))
	}
	if err != nil {
		return nil, fieldErr("header", "the header row is not valid CSV: %v", err)
	}
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, c := range SIMCSVColumns {
			known = known || c == name
		}
		if !known {
			return nil, fieldErr("header", "column %q is not one of %s", h, strings.Join(SIMCSVColumns, ","))
		}
		if _, dup := col[name]; dup {
			return nil, fieldErr("header", "column %q appears twice", name)
		}
		col[name] = i
	}
	for _, need := range []string{"iccid", "imsi"} {
		if _, ok := col[need]; !ok {
			return nil, fieldErr("header", "the header row has no %q column; it needs iccid,imsi and may have msisdn,label,ki,opc", need)
		}
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var rows []SIMRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// The reader resumes at the next line.
			rows = append(rows, SIMRow{Invalid: fmt.Sprintf("line %d is not valid CSV: %v", pe.Line, pe.Err)})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the CSV body: %w", err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		rows = append(rows, SIMRow{ICCID: get(rec, "iccid"), IMSI: get(rec, "imsi"), MSISDN: get(rec, "msisdn"),
			Label: get(rec, "label"), Ki: get(rec, "ki"), OPc: get(rec, "opc")})
	}
}
