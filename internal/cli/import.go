package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// ErrRowsFailed is what device import's error matches (errors.Is) when any
// row was refused, so the process exits non-zero.
var ErrRowsFailed = errors.New("rows failed")

type rowsFailedError struct{ failed, total int }

func (e rowsFailedError) Error() string {
	return fmt.Sprintf("%d of %d rows failed (listed above); fix those rows and import them again", e.failed, e.total)
}

func (e rowsFailedError) Is(target error) bool { return target == ErrRowsFailed }

// csvRecord is one data row of the file and the line it starts on.
type csvRecord struct {
	line   int
	fields []string
}

func importCommand() *cobra.Command {
	var chunk int
	var quiet bool
	c := &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Create devices from a CSV file, showing progress; prints the rows that failed",
		Long: `Create devices from a CSV file with the header row

  id,site,template,tags,auth,thumbprint

(only id is required; tags as key=value;key=value). Each row succeeds or fails on
its own: a bad row never half-creates a device. The rows are sent in chunks so
the progress bar on stderr shows real progress. The command lists the rows that
failed with their line numbers and exits non-zero when any row failed; fix those
rows and import them again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if chunk < 1 {
				return fmt.Errorf("--chunk must be at least 1, not %d", chunk)
			}
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open the CSV file: %w", err)
			}
			defer f.Close()
			header, records, bad, err := readCSV(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var progress io.Writer = cmd.ErrOrStderr()
			if quiet {
				progress = io.Discard
			}
			rep, err := importRecords(cmd.Context(), client, header, records, chunk, progress)
			// Rows the file itself broke count as failed too.
			rep.Rows = append(bad, rep.Rows...)
			rep.Failed += len(bad)
			sortRows(rep.Rows)
			if rerr := renderImport(cmd, rep); rerr != nil {
				return rerr
			}
			if err != nil {
				return err
			}
			if rep.Failed > 0 {
				return rowsFailedError{failed: rep.Failed, total: rep.Failed + rep.Created}
			}
			return nil
		},
	}
	c.Flags().IntVar(&chunk, "chunk", 500, "rows per request")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return c
}

// readCSV reads the header and the data rows with their line numbers; rows
// the CSV syntax breaks come back as failed report rows.
func readCSV(r io.Reader) ([]string, []csvRecord, []registry.ImportRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, nil, errors.New("the file is empty; it needs the header row id,site,template,tags,auth,thumbprint")
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the header row: %w", err)
	}
	var recs []csvRecord
	var bad []registry.ImportRow
	for {
		fields, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, nil, nil, err
			}
			bad = append(bad, registry.ImportRow{Line: pe.StartLine, Error: "not valid CSV: " + pe.Err.Error()})
			continue
		}
		line, _ := cr.FieldPos(0)
		recs = append(recs, csvRecord{line: line, fields: fields})
	}
	return header, recs, bad, nil
}

// importRecords posts the records in chunks, each with the header, and
// merges the reports with the hub's line numbers mapped back to the file's.
// On error it returns what was imported so far.
func importRecords(ctx context.Context, c *Client, header []string, recs []csvRecord, chunk int, progress io.Writer) (registry.ImportReport, error) {
	rep := registry.ImportReport{Rows: []registry.ImportRow{}}
	bar := progressbar.NewOptions(len(recs),
		progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("importing devices"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }),
	)
	for start := 0; start < len(recs); start += chunk {
		part := recs[start:min(start+chunk, len(recs))]
		body, lines, err := encodeChunk(header, part)
		if err != nil {
			return rep, err
		}
		var got registry.ImportReport
		if err := c.Send(ctx, "POST", "/api/v1/devices/import", "text/csv", bytes.NewReader(body), &got); err != nil {
			_ = bar.Exit()
			fmt.Fprintln(progress)
			if start == 0 {
				return rep, err
			}
			return rep, fmt.Errorf("stopped after %d of %d rows: %w", start, len(recs), err)
		}
		rep.Created += got.Created
		rep.Failed += got.Failed
		for _, row := range got.Rows {
			if l, ok := lines[row.Line]; ok {
				row.Line = l
			}
			rep.Rows = append(rep.Rows, row)
		}
		_ = bar.Add(len(part))
	}
	_ = bar.Finish()
	return rep, nil
}

// encodeChunk writes header and records as CSV and maps each record's line
// in the chunk to its line in the file.
func encodeChunk(header []string, recs []csvRecord) ([]byte, map[int]int, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	lines := make(map[int]int, len(recs))
	if err := w.Write(header); err != nil {
		return nil, nil, err
	}
	w.Flush()
	for _, r := range recs {
		lines[bytes.Count(buf.Bytes(), []byte{'\n'})+1] = r.line
		if err := w.Write(r.fields); err != nil {
			return nil, nil, err
		}
		w.Flush()
	}
	return buf.Bytes(), lines, w.Error()
}

func sortRows(rows []registry.ImportRow) {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Line < rows[j].Line })
}

func renderImport(cmd *cobra.Command, rep registry.ImportReport) error {
	return render(cmd, rep, func(w io.Writer) {
		var failed []registry.ImportRow
		for _, r := range rep.Rows {
			if r.Error != "" {
				failed = append(failed, r)
			}
		}
		if len(failed) > 0 {
			row(w, "LINE", "ID", "ERROR")
			for _, r := range failed {
				row(w, r.Line, r.ID, strings.ReplaceAll(r.Error, "\n", " "))
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "created %s, %s failed\n", plural(rep.Created, "device"), plural(rep.Failed, "row"))
	})
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
