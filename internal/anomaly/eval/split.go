package eval

import (
	"slices"
	"strings"
)

// Split is the totals over a subset of the labelled files.
type Split struct {
	Name      string   `json:"name"`
	Folders   []string `json:"folders"`
	Files     int      `json:"files"`
	Pointwise Metrics  `json:"pointwise"`
	NAB       NABSet   `json:"nab,omitempty"`
	SKABNAB   NABSet   `json:"skab_nab,omitempty"`
	// AlwaysOnF1 is the flag-everything F1 over the same files.
	AlwaysOnF1 float64 `json:"always_on_f1"`
}

// folderOf is the first path element of a relative file name ("" for a
// file at the top).
func folderOf(rel string) string {
	if i := strings.IndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// splits totals the labelled files three ways: development folders,
// held-out folders, and all.
func splits(files []FileResult, dev []string) []Split {
	var held []string
	for _, f := range files {
		d := folderOf(f.File)
		if f.Labelled && !slices.Contains(dev, d) && !slices.Contains(held, d) {
			held = append(held, d)
		}
	}
	slices.Sort(held)
	mk := func(name string, folders []string, in func(string) bool) Split {
		s := Split{Name: name, Folders: folders, NAB: NABSet{}}
		var conf, on = s.Pointwise.Confusion, s.Pointwise.Confusion
		for _, f := range files {
			if !f.Labelled || !in(folderOf(f.File)) {
				continue
			}
			s.Files++
			conf = conf.Add(f.Pointwise.Confusion)
			c := f.Pointwise.Confusion
			on.TP += c.TP + c.FN
			on.FP += c.FP + c.TN
			for k, r := range f.NAB {
				s.NAB.add(k, r.Tally)
			}
			if f.SKABNAB != nil {
				if s.SKABNAB == nil {
					s.SKABNAB = NABSet{}
				}
				for k, r := range f.SKABNAB {
					s.SKABNAB.add(k, r.Tally)
				}
			}
		}
		s.Pointwise = metricsOf(conf)
		s.AlwaysOnF1 = on.F1()
		return s
	}
	return []Split{
		mk("dev", dev, func(d string) bool { return slices.Contains(dev, d) }),
		mk("held-out", held, func(d string) bool { return !slices.Contains(dev, d) }),
		mk("all", append(append([]string(nil), dev...), held...), func(string) bool { return true }),
	}
}
