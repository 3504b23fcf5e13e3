package cli

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// deviceTemplate is a template as the API shows it (what the table needs;
// --output json prints the whole object).
type deviceTemplate struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Telemetry  []any  `json:"telemetry"`
	Properties []any  `json:"properties"`
	Commands   []any  `json:"commands"`
}

func templateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "Manage device templates: telemetry, properties and commands; import and export as JSON"}
	cmd.AddCommand(templateCreate(), templateList(), templateGet(), templateDelete(), templateImport(), templateExport())
	return cmd
}

func templateTable(w io.Writer, ts ...deviceTemplate) {
	row(w, "ID", "NAME", "TELEMETRY", "PROPERTIES", "COMMANDS")
	for _, t := range ts {
		row(w, t.ID, t.Name, len(t.Telemetry), len(t.Properties), len(t.Commands))
	}
}

func templateCreate() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "create --file template.json",
		Short: "Create a template from a JSON file (the body of POST /api/v1/templates)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := readJSONFile(cmd, file)
			if err != nil {
				return err
			}
			var t deviceTemplate
			if err := call(cmd, "POST", "/api/v1/templates", body, &t); err != nil {
				return err
			}
			return render(cmd, t, func(w io.Writer) { templateTable(w, t) })
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "JSON file with the template (- for stdin)")
	_ = c.MarkFlagRequired("file")
	return c
}

func templateList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List templates", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var page struct {
				Items []deviceTemplate `json:"items"`
			}
			if err := call(cmd, "GET", "/api/v1/templates", nil, &page); err != nil {
				return err
			}
			return render(cmd, page, func(w io.Writer) { templateTable(w, page.Items...) })
		},
	}
}

func templateGet() *cobra.Command {
	return &cobra.Command{
		Use: "get ID", Short: "Show a template", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var full map[string]any
			if err := call(cmd, "GET", "/api/v1/templates/"+url.PathEscape(args[0]), nil, &full); err != nil {
				return err
			}
			return render(cmd, full, func(w io.Writer) {
				row(w, "KIND", "NAME", "SCHEMA", "UNIT", "RANGE", "WRITABLE")
				for _, kind := range []string{"telemetry", "properties", "commands"} {
					items, _ := full[kind].([]any)
					for _, it := range items {
						m, _ := it.(map[string]any)
						schema := m["schema"]
						if kind == "commands" {
							schema = fmt.Sprintf("%v -> %v", orDash(m["request"]), orDash(m["response"]))
						}
						rng := ""
						if m["min"] != nil || m["max"] != nil {
							rng = fmt.Sprintf("%v..%v", orDash(m["min"]), orDash(m["max"]))
						}
						row(w, strings.TrimSuffix(kind, "s"), m["name"], schema, orDash(m["unit"]), rng, m["writable"] == true)
					}
				}
			})
		},
	}
}

func orDash(v any) any {
	if v == nil || v == "" {
		return "-"
	}
	return v
}

func templateDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete ID", Short: "Delete a template (devices naming it are no longer validated)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", "/api/v1/templates/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted template %s\n", args[0])
			return nil
		},
	}
}

func templateImport() *cobra.Command {
	var replace bool
	c := &cobra.Command{
		Use:   "import FILE",
		Short: "Import a template exported from this or another hub (- reads stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("open %s: %w", args[0], err)
				}
				defer f.Close()
				r = f
			}
			cl, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			path := "/api/v1/templates/import"
			if replace {
				path += "?replace=true"
			}
			var t deviceTemplate
			if err := cl.Send(cmd.Context(), "POST", path, "application/json", r, &t); err != nil {
				return err
			}
			return render(cmd, t, func(w io.Writer) { templateTable(w, t) })
		},
	}
	c.Flags().BoolVar(&replace, "replace", false, "overwrite a template with the same id")
	return c
}

func templateExport() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "export ID",
		Short: "Write a template as portable JSON (stdout, or --file)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var doc []byte
			if err := call(cmd, "GET", "/api/v1/templates/"+url.PathEscape(args[0])+"/export", nil, &doc); err != nil {
				return err
			}
			if file == "" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(doc)))
				return err
			}
			if err := os.WriteFile(file, append(doc, '\n'), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported template %s to %s\n", args[0], file)
			return nil
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "write to this file instead of stdout")
	return c
}
