package cli

import (
	"fmt"
	"io"
	"net/url"

	"github.com/spf13/cobra"
)

type exportView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	URL       string `json:"url"`
	Subject   string `json:"subject"`
	Lag       uint64 `json:"lag"`
	Delivered int64  `json:"delivered"`
	LastError string `json:"lastError"`
}

func exportCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "export", Short: "Continuous data export: webhook, NATS, Prometheus remote write, NDJSON files"}
	cmd.AddCommand(exportCreate(), exportList(), exportDelete())
	return cmd
}

func exportTable(w io.Writer, es ...exportView) {
	row(w, "ID", "NAME", "TYPE", "TARGET", "LAG", "DELIVERED", "LAST ERROR")
	for _, e := range es {
		target := e.URL
		if e.Subject != "" {
			target = e.Subject
		}
		row(w, e.ID, e.Name, e.Type, target, e.Lag, e.Delivered, e.LastError)
	}
}

func exportCreate() *cobra.Command {
	var file, typ, target, secret, site, template string
	var fields, devices []string
	var enrich bool
	c := &cobra.Command{
		Use:   "create NAME --type webhook|nats|remote_write|file [--target URL|SUBJECT] | create --file export.json",
		Short: "Create an export destination",
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
			if typ != "" {
				body["type"] = typ
			}
			if target != "" {
				if typ == "nats" {
					body["subject"] = target
				} else {
					body["url"] = target
				}
			}
			if secret != "" {
				body["secret"] = secret
			}
			if enrich {
				body["enrich"] = true
			}
			filter := map[string]any{}
			if site != "" {
				filter["site"] = site
			}
			if template != "" {
				filter["template"] = template
			}
			if len(fields) > 0 {
				filter["fields"] = fields
			}
			if len(devices) > 0 {
				filter["devices"] = devices
			}
			if len(filter) > 0 {
				body["filter"] = filter
			}
			var e exportView
			if err := call(cmd, "POST", "/api/v1/exports", body, &e); err != nil {
				return err
			}
			return render(cmd, e, func(w io.Writer) { exportTable(w, e) })
		},
	}
	f := c.Flags()
	f.StringVarP(&file, "file", "f", "", "JSON file with the destination (- for stdin); flags override its fields")
	f.StringVar(&typ, "type", "", "webhook, nats, remote_write or file")
	f.StringVar(&target, "target", "", "URL (webhook, remote_write) or subject (nats)")
	f.StringVar(&secret, "secret", "", "webhook HMAC key")
	f.StringVar(&site, "site", "", "only this site's devices")
	f.StringVar(&template, "template", "", "only this template's devices")
	f.StringArrayVar(&fields, "field", nil, "only this field; repeat for more")
	f.StringArrayVar(&devices, "device", nil, "only this device; repeat for more")
	f.BoolVar(&enrich, "enrich", false, "add site, template and device tags")
	_ = c.RegisterFlagCompletionFunc("type", fixedCompletion("webhook", "nats", "remote_write", "file"))
	return c
}

func exportList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List export destinations with their lag", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var page struct {
				Items []exportView `json:"items"`
			}
			if err := call(cmd, "GET", "/api/v1/exports", nil, &page); err != nil {
				return err
			}
			return render(cmd, page, func(w io.Writer) { exportTable(w, page.Items...) })
		},
	}
}

func exportDelete() *cobra.Command {
	return &cobra.Command{
		Use: "delete ID", Short: "Delete an export destination", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", "/api/v1/exports/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted export %s\n", args[0])
			return nil
		},
	}
}
