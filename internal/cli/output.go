package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func outputFormat(cmd *cobra.Command) (string, error) {
	f := cmd.Flag("output")
	if f == nil {
		return "table", nil
	}
	switch v := f.Value.String(); v {
	case "table", "json":
		return v, nil
	default:
		return "", fmt.Errorf("--output must be table or json, not %q", v)
	}
}

// render prints v as indented JSON with --output json, else the table the
// command draws.
func render(cmd *cobra.Command, v any, table func(w io.Writer)) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// row writes tab-separated cells.
func row(w io.Writer, cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = cell(c)
	}
	fmt.Fprintln(w, strings.Join(parts, "\t"))
}

func cell(c any) string {
	switch v := c.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return "-"
		}
		return v
	case time.Time:
		if v.IsZero() {
			return "-"
		}
		return v.Local().Format("2006-01-02 15:04:05")
	case *time.Time:
		if v == nil {
			return "-"
		}
		return cell(*v)
	case map[string]string:
		return formatTags(v)
	case bool:
		if v {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprint(c)
}

func formatTags(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ";")
}

// kv prints one object as aligned key/value lines.
func kv(w io.Writer, pairs ...any) {
	for i := 0; i+1 < len(pairs); i += 2 {
		row(w, fmt.Sprint(pairs[i])+":", pairs[i+1])
	}
}

// parseTags reads repeated k=v (or k:v) flags.
func parseTags(flags []string, sep string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, f := range flags {
		for _, kvs := range strings.Split(f, ";") {
			k, v, ok := strings.Cut(kvs, sep)
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("tag %q must be key%svalue", kvs, sep)
			}
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out, nil
}
