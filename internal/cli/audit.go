package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// auditEntry is one entry of the hub's audit log.
type auditEntry struct {
	ID       string          `json:"id"`
	Org      string          `json:"org"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	ActorOrg string          `json:"actorOrg,omitempty"`
	Via      string          `json:"via"`
	Kind     string          `json:"kind"`
	Object   string          `json:"object,omitempty"`
	Action   string          `json:"action"`
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after,omitempty"`
	Detail   string          `json:"detail,omitempty"`
}

func auditCommand() *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "The audit log: who changed what, when, before and after (secrets left out)"}
	c.AddCommand(auditList(), auditExport())
	return c
}

// auditFilters are the flags list and export share.
type auditFilters struct {
	kind, object, actor, action, since, until string
	newest                                    bool
}

func (f *auditFilters) add(c *cobra.Command) {
	c.Flags().StringVar(&f.kind, "kind", "", "only changes of this object kind (device, rule, token, user, sim, …)")
	c.Flags().StringVar(&f.object, "object", "", "only changes of this object id")
	c.Flags().StringVar(&f.actor, "actor", "", "only changes by this actor (token:<id> or user:<name>)")
	c.Flags().StringVar(&f.action, "action", "", "only this action (an API operation id such as updateDevice)")
	c.Flags().StringVar(&f.since, "since", "", "only changes at or after this time: 24h (ago), RFC 3339 or a date")
	c.Flags().StringVar(&f.until, "until", "", "only changes before this time")
	c.Flags().BoolVar(&f.newest, "newest", false, "newest first")
}

func (f *auditFilters) query() (url.Values, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": f.kind, "object": f.object, "actor": f.actor, "action": f.action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	now := time.Now()
	for k, v := range map[string]string{"from": f.since, "to": f.until} {
		if v == "" {
			continue
		}
		t, err := parseWhen(v, now)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w; write it like 24h, 2026-03-02 or 2026-03-02T08:00:00Z", map[string]string{"from": "since", "to": "until"}[k], err)
		}
		q.Set(k, t.UTC().Format(time.RFC3339Nano))
	}
	if f.newest {
		q.Set("order", "newest")
	}
	return q, nil
}

func auditList() *cobra.Command {
	var (
		f     auditFilters
		limit int
		after string
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List audit entries (all pages, or one page with --limit)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 || limit > 1000 {
				return fmt.Errorf("--limit must be between 1 and 1000, not %d", limit)
			}
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			all, err := listPages[auditEntry](cmd.Context(), client, "/api/v1/audit", q, after, limit)
			if err != nil {
				return err
			}
			if err := render(cmd, all, func(w io.Writer) {
				row(w, "AT", "ACTOR", "VIA", "KIND", "OBJECT", "ACTION")
				for _, e := range all.Items {
					row(w, e.At.Format(time.RFC3339), e.Actor, e.Via, e.Kind, e.Object, e.Action)
				}
			}); err != nil {
				return err
			}
			if limit > 0 && all.Next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more entries: add --after %s\n", all.Next)
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().IntVar(&limit, "limit", 0, "one page of this many entries (1 to 1000) instead of all")
	c.Flags().StringVar(&after, "after", "", "start after this entry (the cursor a previous --limit page printed)")
	return c
}

func auditExport() *cobra.Command {
	var (
		f   auditFilters
		out string
	)
	c := &cobra.Command{
		Use:   "export",
		Short: "Write matching audit entries as NDJSON (one JSON object per line) to stdout or --file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				file, err := os.Create(out)
				if err != nil {
					return fmt.Errorf("create the export file: %w", err)
				}
				defer file.Close()
				w = file
				if err := client.Do(cmd.Context(), "GET", "/api/v1/audit/export?"+q.Encode(), nil, w); err != nil {
					return err
				}
				return file.Close()
			}
			return client.Do(cmd.Context(), "GET", "/api/v1/audit/export?"+q.Encode(), nil, w)
		},
	}
	f.add(c)
	c.Flags().StringVar(&out, "file", "", "write to this file instead of stdout")
	return c
}
