package cli

import (
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// Commands for organizations, API tokens and sites.

type list[T any] struct {
	Items []T `json:"items"`
}

func pathID(prefix, id string) string { return prefix + "/" + url.PathEscape(id) }

func orgCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "org", Short: "Manage organizations (tenants)"}

	var id string
	var retention int
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a customer organization (needs an admin token of the operator organization)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"name": args[0]}
			if id != "" {
				body["id"] = id
			}
			if retention != 0 {
				body["retentionDays"] = retention
			}
			var o registry.Org
			if err := call(cmd, "POST", "/api/v1/orgs", body, &o); err != nil {
				return err
			}
			return render(cmd, o, func(w io.Writer) { orgTable(w, o) })
		},
	}
	create.Flags().StringVar(&id, "id", "", "organization id (default: made from the name)")
	create.Flags().IntVar(&retention, "retention-days", 0, "days telemetry is kept (default 30)")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List your organization and, for the operator organization, its customers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l list[registry.Org]
			if err := call(cmd, "GET", "/api/v1/orgs", nil, &l); err != nil {
				return err
			}
			return render(cmd, l, func(w io.Writer) { orgTable(w, l.Items...) })
		},
	}
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show an organization",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var o registry.Org
			if err := call(cmd, "GET", pathID("/api/v1/orgs", args[0]), nil, &o); err != nil {
				return err
			}
			return render(cmd, o, func(w io.Writer) { orgTable(w, o) })
		},
	}
	ret := &cobra.Command{
		Use:   "retention ID DAYS",
		Short: "Set how many days an organization's telemetry is kept",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			days, err := strconv.Atoi(args[1])
			if err != nil || days < 1 {
				return fmt.Errorf("DAYS must be a whole number of days, at least 1, not %q", args[1])
			}
			var o registry.Org
			if err := call(cmd, "PATCH", pathID("/api/v1/orgs", args[0]), map[string]int{"retentionDays": days}, &o); err != nil {
				return err
			}
			return render(cmd, o, func(w io.Writer) { orgTable(w, o) })
		},
	}
	cmd.AddCommand(create, listCmd, get, ret)
	return cmd
}

func orgTable(w io.Writer, orgs ...registry.Org) {
	row(w, "ID", "NAME", "PARENT", "RETENTION", "CREATED")
	for _, o := range orgs {
		row(w, o.ID, o.Name, o.Parent, fmt.Sprintf("%dd", o.RetentionDays), o.CreatedAt)
	}
}

func tokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens (needs an admin token)"}

	var role string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an API token; its secret is shown once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t registry.Token
			if err := call(cmd, "POST", "/api/v1/tokens", map[string]string{"name": args[0], "role": role}, &t); err != nil {
				return err
			}
			return render(cmd, t, func(w io.Writer) {
				kv(w, "id", t.ID, "org", t.Org, "name", t.Name, "role", string(t.Role), "token", t.Secret)
				fmt.Fprintln(w, "\nThe token is shown only now; the hub keeps only its hash.")
			})
		},
	}
	create.Flags().StringVar(&role, "role", "viewer", "viewer (reads), operator (also writes devices, sites, data) or admin (also tokens, orgs, provisioning)")
	_ = create.RegisterFlagCompletionFunc("role", fixedCompletion("viewer", "operator", "admin"))

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List API tokens (without secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l list[registry.Token]
			if err := call(cmd, "GET", "/api/v1/tokens", nil, &l); err != nil {
				return err
			}
			return render(cmd, l, func(w io.Writer) {
				row(w, "ID", "NAME", "ROLE", "CREATED")
				for _, t := range l.Items {
					row(w, t.ID, t.Name, string(t.Role), t.CreatedAt)
				}
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an API token; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", pathID("/api/v1/tokens", args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted token %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, listCmd, del)
	return cmd
}

func siteCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "site", Short: "Manage factory sites"}

	var id string
	var tags []string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a site",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTags(tags, "=")
			if err != nil {
				return err
			}
			body := map[string]any{"name": args[0]}
			if id != "" {
				body["id"] = id
			}
			if t != nil {
				body["tags"] = t
			}
			var s registry.Site
			if err := call(cmd, "POST", "/api/v1/sites", body, &s); err != nil {
				return err
			}
			return render(cmd, s, func(w io.Writer) { siteTable(w, s) })
		},
	}
	create.Flags().StringVar(&id, "id", "", "site id (default: made from the name)")
	create.Flags().StringArrayVar(&tags, "tag", nil, "tag as key=value; repeat for more")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List sites",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l list[registry.Site]
			if err := call(cmd, "GET", "/api/v1/sites", nil, &l); err != nil {
				return err
			}
			return render(cmd, l, func(w io.Writer) { siteTable(w, l.Items...) })
		},
	}
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show a site",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s registry.Site
			if err := call(cmd, "GET", pathID("/api/v1/sites", args[0]), nil, &s); err != nil {
				return err
			}
			return render(cmd, s, func(w io.Writer) { siteTable(w, s) })
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a site no device belongs to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", pathID("/api/v1/sites", args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted site %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, listCmd, get, del)
	return cmd
}

func siteTable(w io.Writer, sites ...registry.Site) {
	row(w, "ID", "NAME", "TAGS", "CREATED")
	for _, s := range sites {
		row(w, s.ID, s.Name, s.Tags, s.CreatedAt)
	}
}

// call is Client.Do for a command: client from the command's settings,
// context from the command.
func call(cmd *cobra.Command, method, path string, body, out any) error {
	c, err := ClientFrom(cmd)
	if err != nil {
		return err
	}
	return c.Do(cmd.Context(), method, path, body, out)
}
