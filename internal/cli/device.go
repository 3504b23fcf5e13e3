package cli

import (
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/shopfloor/shopfloor/internal/registry"
)

// device is a device as the API shows it.
type device struct {
	registry.Device
	Connected bool `json:"connected"`
}

func deviceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Manage devices: identities, keys, credentials, bulk import"}
	cmd.AddCommand(deviceCreate(), deviceGet(), deviceList(), deviceUpdate(),
		deviceSetDisabled("disable", true), deviceSetDisabled("enable", false),
		deviceDelete(), importCommand(), deviceToken(), deviceConnString(), deviceKeys())
	return cmd
}

func deviceCreate() *cobra.Command {
	var site, template, auth, thumb string
	var tags []string
	var disabled bool
	c := &cobra.Command{
		Use:   "create ID",
		Short: "Create a device; SAS devices get generated keys, shown once here",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTags(tags, "=")
			if err != nil {
				return err
			}
			body := map[string]any{"id": args[0]}
			for k, v := range map[string]string{"site": site, "template": template, "auth": auth, "thumbprint": thumb} {
				if v != "" {
					body[k] = v
				}
			}
			if t != nil {
				body["tags"] = t
			}
			if disabled {
				body["disabled"] = true
			}
			var d device
			if err := call(cmd, "POST", "/api/v1/devices", body, &d); err != nil {
				return err
			}
			return render(cmd, d, func(w io.Writer) { deviceDetail(w, d) })
		},
	}
	f := c.Flags()
	f.StringVar(&site, "site", "", "site id")
	f.StringVar(&template, "template", "", "device template id")
	f.StringArrayVar(&tags, "tag", nil, "tag as key=value; repeat for more")
	f.StringVar(&auth, "auth", "", "sas (default), x509_self or x509_ca")
	f.StringVar(&thumb, "thumbprint", "", "SHA-256 thumbprint of the device certificate, for x509_self")
	f.BoolVar(&disabled, "disabled", false, "create it disabled")
	_ = c.RegisterFlagCompletionFunc("auth", fixedCompletion("sas", "x509_self", "x509_ca"))
	return c
}

func deviceGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a device (keys need an operator or admin token)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d device
			if err := call(cmd, "GET", pathID("/api/v1/devices", args[0]), nil, &d); err != nil {
				return err
			}
			return render(cmd, d, func(w io.Writer) { deviceDetail(w, d) })
		},
	}
}

func deviceDetail(w io.Writer, d device) {
	kv(w, "id", d.ID, "org", d.Org, "site", d.Site, "template", d.Template, "tags", d.Tags,
		"auth", string(d.Auth), "disabled", d.Disabled, "connected", d.Connected)
	if d.PrimaryKey != "" {
		kv(w, "primary key", d.PrimaryKey, "secondary key", d.SecondaryKey)
	}
	if d.Thumbprint != "" {
		kv(w, "thumbprint", d.Thumbprint)
	}
	if d.EnrollmentGroup != "" {
		kv(w, "enrollment group", d.EnrollmentGroup)
	}
	kv(w, "created", d.CreatedAt, "updated", d.UpdatedAt, "errors", d.ErrorCount)
	if d.LastError != "" {
		kv(w, "last error", d.LastError, "last error at", d.LastErrorAt)
	}
}

func deviceList() *cobra.Command {
	var site, template, after string
	var tags []string
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List devices (all pages, or one page with --limit)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if site != "" {
				q.Set("site", site)
			}
			if template != "" {
				q.Set("template", template)
			}
			for _, t := range tags {
				q.Add("tag", t)
			}
			all, err := listPages[device](cmd.Context(), client, "/api/v1/devices", q, after, limit)
			if err != nil {
				return err
			}
			if err := render(cmd, all, func(w io.Writer) {
				row(w, "ID", "SITE", "TEMPLATE", "TAGS", "AUTH", "DISABLED", "CONNECTED", "ERRORS")
				for _, d := range all.Items {
					row(w, d.ID, d.Site, d.Template, d.Tags, string(d.Auth), d.Disabled, d.Connected, d.ErrorCount)
				}
			}); err != nil {
				return err
			}
			if limit > 0 && all.Next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more devices: add --after %s\n", all.Next)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&site, "site", "", "only devices of this site")
	f.StringVar(&template, "template", "", "only devices of this template")
	f.StringArrayVar(&tags, "tag", nil, "only devices with this tag, key:value; repeat to require several")
	f.IntVar(&limit, "limit", 0, "show one page of at most this many devices (1-1000)")
	f.StringVar(&after, "after", "", "start after this device id (the cursor --limit prints)")
	return c
}

func deviceUpdate() *cobra.Command {
	var site, template string
	var tags []string
	var clearTags bool
	c := &cobra.Command{
		Use:   "update ID",
		Short: "Change a device's site, template or tags",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			patch := map[string]any{}
			if cmd.Flags().Changed("site") {
				patch["site"] = site
			}
			if cmd.Flags().Changed("template") {
				patch["template"] = template
			}
			if clearTags {
				patch["tags"] = map[string]string{}
			}
			if len(tags) > 0 {
				t, err := parseTags(tags, "=")
				if err != nil {
					return err
				}
				patch["tags"] = t
			}
			if len(patch) == 0 {
				return fmt.Errorf("nothing to change: give --site, --template, --tag or --clear-tags")
			}
			return patchDevice(cmd, args[0], patch)
		},
	}
	f := c.Flags()
	f.StringVar(&site, "site", "", "move it to this site (\"\" for none)")
	f.StringVar(&template, "template", "", "give it this template (\"\" for none)")
	f.StringArrayVar(&tags, "tag", nil, "replace its tags with these key=value tags; repeat for more")
	f.BoolVar(&clearTags, "clear-tags", false, "remove all its tags")
	return c
}

func patchDevice(cmd *cobra.Command, id string, patch map[string]any) error {
	var d device
	if err := call(cmd, "PATCH", pathID("/api/v1/devices", id), patch, &d); err != nil {
		return err
	}
	return render(cmd, d, func(w io.Writer) { deviceDetail(w, d) })
}

func deviceSetDisabled(verb string, disabled bool) *cobra.Command {
	short := "Enable a device so it can connect again"
	if disabled {
		short = "Disable a device: it is disconnected and cannot connect until enabled"
	}
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return patchDevice(cmd, args[0], map[string]any{"disabled": disabled})
		},
	}
}

func deviceDelete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a device and drop its connection",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "DELETE", pathID("/api/v1/devices", args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted device %s\n", args[0])
			return nil
		},
	}
}

func deviceToken() *cobra.Command {
	var ttl time.Duration
	var host, key string
	c := &cobra.Command{
		Use:   "token ID",
		Short: "Sign a SAS token the device uses as its MQTT password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"ttl": {ttl.String()}}
			if host != "" {
				q.Set("host", host)
			}
			if key != "" {
				q.Set("key", key)
			}
			var t struct {
				Device string    `json:"device"`
				Token  string    `json:"token"`
				Expiry time.Time `json:"expiry"`
			}
			if err := call(cmd, "GET", pathID("/api/v1/devices", args[0])+"/token?"+q.Encode(), nil, &t); err != nil {
				return err
			}
			return render(cmd, t, func(w io.Writer) { fmt.Fprintln(w, t.Token) })
		},
	}
	c.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token works")
	c.Flags().StringVar(&host, "host", "", "host name the device connects to (default: the hub's host in --url)")
	c.Flags().StringVar(&key, "key", "", "primary (default) or secondary")
	_ = c.RegisterFlagCompletionFunc("key", fixedCompletion("primary", "secondary"))
	return c
}

func deviceConnString() *cobra.Command {
	var host, key string
	c := &cobra.Command{
		Use:   "connection-string ID",
		Short: "Print the device's connection string (HostName=…;DeviceId=…;SharedAccessKey=…)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if host != "" {
				q.Set("host", host)
			}
			if key != "" {
				q.Set("key", key)
			}
			var cs struct {
				Device           string `json:"device"`
				ConnectionString string `json:"connectionString"`
			}
			path := pathID("/api/v1/devices", args[0]) + "/connection-string"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			if err := call(cmd, "GET", path, nil, &cs); err != nil {
				return err
			}
			return render(cmd, cs, func(w io.Writer) { fmt.Fprintln(w, cs.ConnectionString) })
		},
	}
	c.Flags().StringVar(&host, "host", "", "host name the device connects to (default: the hub's host in --url)")
	c.Flags().StringVar(&key, "key", "", "primary (default) or secondary")
	_ = c.RegisterFlagCompletionFunc("key", fixedCompletion("primary", "secondary"))
	return c
}

func deviceKeys() *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Manage a device's symmetric keys"}
	keys.AddCommand(&cobra.Command{
		Use:       "regenerate ID primary|secondary",
		Short:     "Replace one of a device's keys with a new random key",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"primary", "secondary"},
		RunE: func(cmd *cobra.Command, args []string) error {
			which := args[1]
			if which != "primary" && which != "secondary" {
				return fmt.Errorf("the key to regenerate must be primary or secondary, not %q", which)
			}
			var d device
			if err := call(cmd, "POST", pathID("/api/v1/devices", args[0])+"/keys/"+which+"/regenerate", nil, &d); err != nil {
				return err
			}
			return render(cmd, d, func(w io.Writer) { deviceDetail(w, d) })
		},
	})
	return keys
}
