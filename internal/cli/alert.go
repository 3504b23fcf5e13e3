package cli

import (
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

type alert struct {
	ID        string    `json:"id"`
	RuleName  string    `json:"ruleName"`
	Rule      string    `json:"rule"`
	Device    string    `json:"device"`
	Severity  string    `json:"severity"`
	State     string    `json:"state"`
	Count     int64     `json:"count"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	Message   string    `json:"message"`
	Assignee  string    `json:"assignee"`
	Notes     []struct {
		At   time.Time `json:"at"`
		By   string    `json:"by"`
		Text string    `json:"text"`
	} `json:"notes"`
}

func alertCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "alert", Short: "Follow alerts: list, acknowledge, resolve, annotate"}
	cmd.AddCommand(alertList(), alertGet(), alertTransition("ack", "Acknowledge an open alert"),
		alertTransition("resolve", "Resolve an alert"), alertNote())
	return cmd
}

func alertTable(w io.Writer, as ...alert) {
	row(w, "ID", "STATE", "SEVERITY", "DEVICE", "RULE", "COUNT", "LAST SEEN")
	for _, a := range as {
		name := a.RuleName
		if name == "" {
			name = a.Rule
		}
		row(w, a.ID, a.State, a.Severity, a.Device, name, a.Count, a.LastSeen.Format(time.RFC3339))
	}
}

func alertList() *cobra.Command {
	var state, device, rule, severity string
	c := &cobra.Command{
		Use: "list", Short: "List alerts, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {"1000"}}
			for k, v := range map[string]string{"state": state, "device": device, "rule": rule, "severity": severity} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var page struct {
				Items []alert `json:"items"`
				Next  string  `json:"next,omitempty"`
			}
			if err := call(cmd, "GET", "/api/v1/alerts?"+q.Encode(), nil, &page); err != nil {
				return err
			}
			return render(cmd, page, func(w io.Writer) { alertTable(w, page.Items...) })
		},
	}
	f := c.Flags()
	f.StringVar(&state, "state", "", "open, acknowledged, resolved or active")
	f.StringVar(&device, "device", "", "only this device's alerts")
	f.StringVar(&rule, "rule", "", "only this rule's alerts")
	f.StringVar(&severity, "severity", "", "only this severity")
	_ = c.RegisterFlagCompletionFunc("state", fixedCompletion("open", "acknowledged", "resolved", "active"))
	return c
}

func alertGet() *cobra.Command {
	return &cobra.Command{
		Use: "get ID", Short: "Show an alert with its notes", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var a alert
			if err := call(cmd, "GET", "/api/v1/alerts/"+url.PathEscape(args[0]), nil, &a); err != nil {
				return err
			}
			return render(cmd, a, func(w io.Writer) {
				kv(w, "id", a.ID, "state", a.State, "severity", a.Severity, "device", a.Device, "rule", a.RuleName,
					"count", a.Count, "first seen", a.FirstSeen.Format(time.RFC3339), "last seen", a.LastSeen.Format(time.RFC3339),
					"message", a.Message, "assignee", a.Assignee)
				for _, n := range a.Notes {
					row(w, "note:", n.At.Format(time.RFC3339)+" "+n.By+": "+n.Text)
				}
			})
		},
	}
}

func alertTransition(verb, short string) *cobra.Command {
	var note string
	c := &cobra.Command{
		Use: verb + " ID", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			if note != "" {
				body = map[string]string{"note": note}
			}
			var a alert
			if err := call(cmd, "POST", "/api/v1/alerts/"+url.PathEscape(args[0])+"/"+verb, body, &a); err != nil {
				return err
			}
			return render(cmd, a, func(w io.Writer) { alertTable(w, a) })
		},
	}
	c.Flags().StringVar(&note, "note", "", "why, recorded in the alert's history")
	return c
}

func alertNote() *cobra.Command {
	return &cobra.Command{
		Use: "note ID TEXT", Short: "Add a note to an alert", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, "POST", "/api/v1/alerts/"+url.PathEscape(args[0])+"/notes", map[string]string{"text": args[1]}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "noted on alert %s\n", args[0])
			return nil
		},
	}
}
