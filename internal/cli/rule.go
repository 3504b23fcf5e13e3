package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/spf13/cobra"
)

// rule is a rule as the API shows it (only what the table needs; --output
// json prints the whole object).
type rule struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Condition string          `json:"condition"`
	Severity  string          `json:"severity"`
	Disabled  bool            `json:"disabled"`
	Version   int64           `json:"version"`
	Scope     json.RawMessage `json:"scope"`
	Actions   []struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	} `json:"actions"`
}

func ruleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "rule", Short: "Manage alert rules: create, list, enable, disable, dry-run"}
	cmd.AddCommand(ruleCreate(), ruleList(), ruleGet(), ruleDelete(),
		ruleSetDisabled("enable", false), ruleSetDisabled("disable", true), ruleDryRun())
	return cmd
}

// readJSONFile reads a JSON object from a file ("-" is stdin).
func readJSONFile(cmd *cobra.Command, path string) (map[string]any, error) {
	var r io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		defer f.Close()
		r = f
	}
	var m map[string]any
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", path, err)
	}
	return m, nil
}

func ruleTable(w io.Writer, rs ...rule) {
	row(w, "ID", "NAME", "SEVERITY", "ENABLED", "CONDITION", "ACTIONS")
	for _, r := range rs {
		row(w, r.ID, r.Name, r.Severity, !r.Disabled, r.Condition, len(r.Actions))
	}
}

func ruleCreate() *cobra.Command {
	var file, condition, severity, site, template, device, webhook, secret, forDur string
	var tags []string
	c := &cobra.Command{
		Use:   "create NAME --condition EXPR | create --file rule.json",
		Short: "Create a rule from flags or from a JSON file (the body of POST /api/v1/rules)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if file != "" {
				m, err := readJSONFile(cmd, file)
				if err != nil {
					return err
				}
				body = m
			}
			if len(args) == 1 {
				body["name"] = args[0]
			}
			if condition != "" {
				body["condition"] = condition
			}
			if severity != "" {
				body["severity"] = severity
			}
			if forDur != "" {
				body["for"] = forDur
			}
			t, err := parseTags(tags, "=")
			if err != nil {
				return err
			}
			scope := map[string]any{}
			for k, v := range map[string]string{"site": site, "template": template, "device": device} {
				if v != "" {
					scope[k] = v
				}
			}
			if t != nil {
				scope["tags"] = t
			}
			if len(scope) > 0 {
				body["scope"] = scope
			}
			if webhook != "" {
				body["actions"] = []map[string]any{{"type": "webhook", "url": webhook, "secret": secret}}
			}
			var r rule
			if err := call(cmd, "POST", "/api/v1/rules", body, &r); err != nil {
				return err
			}
			return render(cmd, r, func(w io.Writer) { ruleTable(w, r) })
		},
	}
	f := c.Flags()
	f.StringVarP(&file, "file", "f", "", "JSON file with the rule (- for stdin); flags override its fields")
	f.StringVar(&condition, "condition", "", "condition, e.g. 'temperature > 80 && avg(temperature, 5m) > 75'")
	f.StringVar(&severity, "severity", "", "critical, major, minor, warning (default) or info")
	f.StringVar(&forDur, "for", "", "how long the condition must hold, e.g. 2m")
	f.StringVar(&site, "site", "", "only devices of this site")
	f.StringVar(&template, "template", "", "only devices of this template")
	f.StringVar(&device, "device", "", "only this device")
	f.StringArrayVar(&tags, "tag", nil, "only devices with tag key=value; repeat for more")
	f.StringVar(&webhook, "webhook", "", "POST alerts to this URL")
	f.StringVar(&secret, "secret", "", "HMAC key for the webhook's X-Shopfloor-Signature")
	_ = c.RegisterFlagCompletionFunc("severity", fixedCompletion("critical", "major", "minor", "warning", "info"))
	return c
}

func ruleList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List rules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var page struct {
				Items []rule `json:"items"`
				Next  string `json:"next,omitempty"`
			}
			if err := call(cmd, "GET", "/api/v1/rules?limit=1000", nil, &page); err != nil {
				return err
			}
			return render(cmd, page, func(w io.Writer) { ruleTable(w, page.Items...) })
		},
	}
}

func ruleGet() *cobra.Command {
	return &cobra.Command{
		Use: "get ID", Short: "Show a rule (secrets redacted)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r rule
			if err := call(cmd, "GET", "/api/v1/rules/"+url.PathEscape(args[0]), nil, &r); err != nil {
				return err
			}
			return render(cmd, r, func(w io.Writer) {
				kv(w, "id", r.ID, "name", r.Name, "condition", r.Condition, "severity", r.Severity,
					"enabled", !r.Disabled, "version", r.Version, "scope", string(r.Scope), "actions", len(r.Actions))
			})
		},
	}
}

func ruleDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete ID", Short: "Delete a rule (its open alerts stay)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", "/api/v1/rules/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted rule %s\n", args[0])
			return nil
		},
	}
}

func ruleSetDisabled(verb string, disabled bool) *cobra.Command {
	return &cobra.Command{
		Use: verb + " ID", Short: map[bool]string{false: "Switch a rule on", true: "Switch a rule off"}[disabled], Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r rule
			if err := call(cmd, "POST", "/api/v1/rules/"+url.PathEscape(args[0])+"/"+verb, nil, &r); err != nil {
				return err
			}
			return render(cmd, r, func(w io.Writer) { ruleTable(w, r) })
		},
	}
}

func ruleDryRun() *cobra.Command {
	var from, to, file string
	c := &cobra.Command{
		Use:   "dry-run ID | dry-run --file rule.json",
		Short: "How often a rule would have fired over stored history (default the last 7 days)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if from != "" {
				body["from"] = from
			}
			if to != "" {
				body["to"] = to
			}
			path := "/api/v1/rules/dry-run"
			switch {
			case len(args) == 1 && file == "":
				path = "/api/v1/rules/" + url.PathEscape(args[0]) + "/dry-run"
			case len(args) == 0 && file != "":
				m, err := readJSONFile(cmd, file)
				if err != nil {
					return err
				}
				body["rule"] = m
			default:
				return fmt.Errorf("give either a stored rule's ID or --file with a rule definition")
			}
			var res struct {
				From        string         `json:"from"`
				To          string         `json:"to"`
				Devices     int            `json:"devices"`
				Evaluations int64          `json:"evaluations"`
				Firings     int            `json:"firings"`
				Clears      int            `json:"clears"`
				PerDevice   map[string]int `json:"perDevice"`
			}
			if err := call(cmd, "POST", path, body, &res); err != nil {
				return err
			}
			return render(cmd, res, func(w io.Writer) {
				kv(w, "from", res.From, "to", res.To, "devices", res.Devices, "evaluations", res.Evaluations,
					"firings", res.Firings, "clears", res.Clears)
				for d, n := range res.PerDevice {
					row(w, "  "+d+":", n)
				}
			})
		},
	}
	c.Flags().StringVar(&from, "from", "", "start: RFC 3339 or unix ms (default 7 days before --to)")
	c.Flags().StringVar(&to, "to", "", "end: RFC 3339 or unix ms (default now)")
	c.Flags().StringVarP(&file, "file", "f", "", "JSON file with a rule definition to try (- for stdin)")
	return c
}
