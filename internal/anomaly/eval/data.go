package eval

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/internal/anomaly/nab"
)

// ErrData means an input file or label file could not be used.
var ErrData = errors.New("anomaly eval: unusable input")

// series is one input file, fully read (evaluation only; the detectors
// themselves see it one row at a time).
type series struct {
	rel     string      // path relative to the data directory, with '/'
	times   []time.Time // row timestamps
	raw     []string    // timestamps as written, echoed to the output
	rawVal  []string    // nab-csv values as written, echoed to the output
	fields  []string
	values  []float64 // rows × len(fields)
	anomaly []bool    // SKAB "anomaly" column; nil when absent
	cp      []bool    // SKAB "changepoint" column; nil when absent
}

func (s *series) rows() int { return len(s.times) }

func (s *series) row(i int) []float64 {
	d := len(s.fields)
	return s.values[i*d : i*d+d]
}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	layouts := [...]string{
		"2006-01-02 15:04:05",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04:05",
		"2006-01-02T15:04:05.999999999",
		time.RFC3339Nano,
	}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Unix(0, int64(v*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("timestamp %q is not in a known form (use \"2006-01-02 15:04:05\", RFC 3339 or Unix seconds)", s)
}

func parseValue(s string) float64 {
	s = strings.TrimSpace(s)
	if s == "" {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// readSKAB reads a SKAB file: ';'-separated, datetime first, then sensors,
// then the anomaly and changepoint label columns (either may be missing, as
// in anomaly-free.csv).
func readSKAB(path, rel string) (*series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrData, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	if !sc.Scan() {
		return nil, fmt.Errorf("%w: %s is empty; a SKAB file starts with a header line", ErrData, rel)
	}
	head := strings.Split(strings.TrimPrefix(sc.Text(), "\ufeff"), ";")
	if len(head) < 2 || strings.TrimSpace(head[0]) != "datetime" {
		return nil, fmt.Errorf("%w: %s does not look like SKAB: the first column must be \"datetime\" and columns ';'-separated", ErrData, rel)
	}
	s := &series{rel: rel}
	ai, ci := -1, -1
	var cols []int
	for i, h := range head[1:] {
		h = strings.TrimSpace(h)
		switch h {
		case "anomaly":
			ai = i + 1
		case "changepoint":
			ci = i + 1
		default:
			s.fields = append(s.fields, h)
			cols = append(cols, i+1)
		}
	}
	if len(s.fields) == 0 {
		return nil, fmt.Errorf("%w: %s has no sensor columns", ErrData, rel)
	}
	line := 1
	for sc.Scan() {
		line++
		txt := sc.Text()
		if strings.TrimSpace(txt) == "" {
			continue
		}
		rec := strings.Split(txt, ";")
		if len(rec) != len(head) {
			return nil, fmt.Errorf("%w: %s line %d has %d columns, the header %d", ErrData, rel, line, len(rec), len(head))
		}
		t, err := parseTime(rec[0])
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrData, rel, line, err)
		}
		s.times = append(s.times, t)
		s.raw = append(s.raw, rec[0])
		for _, c := range cols {
			s.values = append(s.values, parseValue(rec[c]))
		}
		if ai >= 0 {
			s.anomaly = append(s.anomaly, parseValue(rec[ai]) == 1)
		}
		if ci >= 0 {
			s.cp = append(s.cp, parseValue(rec[ci]) == 1)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrData, rel, err)
	}
	return s, nil
}

// readNABCSV reads a NAB data file: "timestamp,value" with a header; other
// columns (a label column, say) are ignored.
func readNABCSV(path, rel string) (*series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrData, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	if !sc.Scan() {
		return nil, fmt.Errorf("%w: %s is empty; expected a \"timestamp,value\" header", ErrData, rel)
	}
	head := strings.Split(strings.TrimPrefix(sc.Text(), "\ufeff"), ",")
	ti, vi := -1, -1
	for i, h := range head {
		switch strings.TrimSpace(h) {
		case "timestamp":
			ti = i
		case "value":
			vi = i
		}
	}
	if ti < 0 || vi < 0 {
		return nil, fmt.Errorf("%w: %s needs \"timestamp\" and \"value\" columns (NAB format)", ErrData, rel)
	}
	s := &series{rel: rel, fields: []string{"value"}}
	line := 1
	for sc.Scan() {
		line++
		txt := sc.Text()
		if strings.TrimSpace(txt) == "" {
			continue
		}
		rec := strings.Split(txt, ",")
		if len(rec) <= max(ti, vi) {
			return nil, fmt.Errorf("%w: %s line %d has too few columns", ErrData, rel, line)
		}
		t, err := parseTime(rec[ti])
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrData, rel, line, err)
		}
		s.times = append(s.times, t)
		s.raw = append(s.raw, strings.TrimSpace(rec[ti]))
		s.rawVal = append(s.rawVal, strings.TrimSpace(rec[vi]))
		s.values = append(s.values, parseValue(rec[vi]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrData, rel, err)
	}
	return s, nil
}

// listCSV returns the relative paths of every .csv file under dir, sorted.
func listCSV(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.EqualFold(filepath.Ext(p), ".csv") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrData, dir, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no .csv files under %s; point --data at the dataset's data directory", ErrData, dir)
	}
	sort.Strings(out)
	return out, nil
}

// readLabels reads NAB combined windows: {"dir/file.csv": [[start, end], …]}.
func readLabels(path string) (map[string][]nab.Window, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrData, err)
	}
	var raw map[string][][]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %s is not NAB combined-windows JSON (file path -> list of [start, end]): %v", ErrData, path, err)
	}
	out := make(map[string][]nab.Window, len(raw))
	for file, ws := range raw {
		for _, w := range ws {
			if len(w) != 2 {
				return nil, fmt.Errorf("%w: %s: window for %s must be [start, end]", ErrData, path, file)
			}
			a, err := parseTime(w[0])
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %v", ErrData, path, file, err)
			}
			z, err := parseTime(w[1])
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %v", ErrData, path, file, err)
			}
			if z.Before(a) {
				return nil, fmt.Errorf("%w: %s: window for %s ends before it starts", ErrData, path, file)
			}
			out[filepath.ToSlash(file)] = append(out[filepath.ToSlash(file)], nab.Window{Start: a, End: z})
		}
		if _, ok := out[filepath.ToSlash(file)]; !ok {
			out[filepath.ToSlash(file)] = nil
		}
	}
	return out, nil
}
