package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// bulkJob is a job as the API shows it (what the table needs; --output json
// prints the whole object).
type bulkJob struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Query    json.RawMessage `json:"query"`
	Rate     float64         `json:"rate"`
	State    string          `json:"state"`
	Progress struct {
		Total     int `json:"total"`
		Pending   int `json:"pending"`
		Succeeded int `json:"succeeded"`
		Failed    int `json:"failed"`
		Cancelled int `json:"cancelled"`
	} `json:"progress"`
	CreatedAt time.Time `json:"createdAt"`
}

func jobCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Bulk desired-property patches and direct methods over a device query: create, list, get, cancel"}
	cmd.AddCommand(jobCreate(), jobList(), jobGet(), jobCancel())
	return cmd
}

func jobTable(w io.Writer, js ...bulkJob) {
	row(w, "ID", "TYPE", "STATE", "DONE", "SUCCEEDED", "FAILED", "CANCELLED", "RATE", "QUERY")
	for _, j := range js {
		p := j.Progress
		row(w, j.ID, j.Type, j.State, fmt.Sprintf("%d/%d", p.Total-p.Pending, p.Total), p.Succeeded, p.Failed, p.Cancelled, j.Rate, string(j.Query))
	}
}

func jobCreate() *cobra.Command {
	var file, desired, method, payload, site, template string
	var tags []string
	var rate float64
	var timeout int
	c := &cobra.Command{
		Use:   "create --desired JSON | --method NAME [--payload JSON] [--site S] [--template T] [--tag k=v] [--rate N]",
		Short: "Start a job over the devices the query selects (or from --file, the body of POST /api/v1/jobs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{}
			if file != "" {
				m, err := readJSONFile(cmd, file)
				if err != nil {
					return err
				}
				body = m
			}
			switch {
			case desired != "" && method != "":
				return fmt.Errorf("give either --desired or --method, not both")
			case desired != "":
				var d map[string]any
				if err := json.Unmarshal([]byte(desired), &d); err != nil {
					return fmt.Errorf("--desired must be a JSON object such as '{\"setpoint\":72}': %w", err)
				}
				body["type"], body["desired"] = "desired", d
			case method != "":
				m := map[string]any{"name": method}
				if payload != "" {
					if !json.Valid([]byte(payload)) {
						return fmt.Errorf("--payload is not valid JSON")
					}
					m["payload"] = json.RawMessage(payload)
				}
				if timeout > 0 {
					m["timeoutSeconds"] = timeout
				}
				body["type"], body["method"] = "method", m
			case file == "":
				return fmt.Errorf("say what the job does: --desired '{\"setpoint\":72}' or --method reboot")
			}
			q, _ := body["query"].(map[string]any)
			if q == nil {
				q = map[string]any{}
			}
			if site != "" {
				q["site"] = site
			}
			if template != "" {
				q["template"] = template
			}
			t, err := parseTags(tags, "=")
			if err != nil {
				return err
			}
			if t != nil {
				q["tags"] = t
			}
			body["query"] = q
			if rate > 0 {
				body["rate"] = rate
			}
			var j bulkJob
			if err := call(cmd, "POST", "/api/v1/jobs", body, &j); err != nil {
				return err
			}
			return render(cmd, j, func(w io.Writer) { jobTable(w, j) })
		},
	}
	f := c.Flags()
	f.StringVarP(&file, "file", "f", "", "JSON file with the job (- for stdin); flags override its fields")
	f.StringVar(&desired, "desired", "", "desired-properties merge patch, a JSON object")
	f.StringVar(&method, "method", "", "direct method to invoke")
	f.StringVar(&payload, "payload", "", "method payload, JSON")
	f.IntVar(&timeout, "timeout", 0, "seconds each device has to answer the method (default 30)")
	f.StringVar(&site, "site", "", "only devices of this site")
	f.StringVar(&template, "template", "", "only devices of this template")
	f.StringArrayVar(&tags, "tag", nil, "only devices with tag key=value; repeat for more")
	f.Float64Var(&rate, "rate", 0, "devices per second (default 10)")
	return c
}

func jobList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List jobs, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var page struct {
				Items []bulkJob `json:"items"`
			}
			if err := call(cmd, "GET", "/api/v1/jobs", nil, &page); err != nil {
				return err
			}
			return render(cmd, page, func(w io.Writer) { jobTable(w, page.Items...) })
		},
	}
}

// progressBar draws [#####.....] 27/48 (succeeded 27, failed 1, cancelled 0).
func progressBar(j bulkJob, width int) string {
	p := j.Progress
	done := p.Total - p.Pending
	filled := width
	if p.Total > 0 {
		filled = done * width / p.Total
	}
	return fmt.Sprintf("[%s%s] %d/%d %s (succeeded %d, failed %d, cancelled %d)",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, p.Total, j.State, p.Succeeded, p.Failed, p.Cancelled)
}

func jobGet() *cobra.Command {
	var watch, devices bool
	var every time.Duration
	c := &cobra.Command{
		Use: "get ID", Short: "Show a job's progress; --watch follows it with a progress bar until it ends", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/api/v1/jobs/" + url.PathEscape(args[0])
			var j bulkJob
			if err := call(cmd, "GET", path, nil, &j); err != nil {
				return err
			}
			if watch {
				out := cmd.OutOrStdout()
				tick := time.NewTicker(every)
				defer tick.Stop()
				for j.State == "running" {
					fmt.Fprintf(out, "\r%s", progressBar(j, 30))
					select {
					case <-cmd.Context().Done():
						fmt.Fprintln(out)
						return cmd.Context().Err()
					case <-tick.C:
					}
					if err := call(cmd, "GET", path, nil, &j); err != nil {
						fmt.Fprintln(out)
						return err
					}
				}
				fmt.Fprintf(out, "\r%s\n", progressBar(j, 30))
			}
			if devices {
				var page struct {
					Items []struct {
						Device string          `json:"deviceId"`
						State  string          `json:"state"`
						Status int             `json:"status"`
						Resp   json.RawMessage `json:"response"`
						Error  string          `json:"error"`
					} `json:"items"`
				}
				if err := call(cmd, "GET", path+"/devices", nil, &page); err != nil {
					return err
				}
				return render(cmd, page, func(w io.Writer) {
					row(w, "DEVICE", "STATE", "STATUS", "RESPONSE", "ERROR")
					for _, d := range page.Items {
						row(w, d.Device, d.State, d.Status, string(d.Resp), d.Error)
					}
				})
			}
			if watch {
				return nil
			}
			return render(cmd, j, func(w io.Writer) { jobTable(w, j) })
		},
	}
	c.Flags().BoolVarP(&watch, "watch", "w", false, "follow the job with a progress bar until it ends")
	c.Flags().DurationVar(&every, "every", time.Second, "how often --watch polls")
	c.Flags().BoolVar(&devices, "devices", false, "list the result of every device")
	return c
}

func jobCancel() *cobra.Command {
	return &cobra.Command{
		Use: "cancel ID", Short: "Cancel a running job: devices not reached yet are left alone", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j bulkJob
			if err := call(cmd, "POST", "/api/v1/jobs/"+url.PathEscape(args[0])+"/cancel", nil, &j); err != nil {
				return err
			}
			return render(cmd, j, func(w io.Writer) { jobTable(w, j) })
		},
	}
}
