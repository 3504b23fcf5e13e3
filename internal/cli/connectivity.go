package cli

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// Connectivity commands: sim, devicegroup, slice. They speak the JSON of
// /api/v1/connectivity/ with local types, so the command line does not
// link the server's connectivity package.

const connPath = "/api/v1/connectivity"

type cliSIM struct {
	ICCID       string `json:"iccid"`
	IMSI        string `json:"imsi"`
	MSISDN      string `json:"msisdn,omitempty"`
	Label       string `json:"label,omitempty"`
	State       string `json:"state"`
	SystemState string `json:"systemState,omitempty"`
	Device      string `json:"device,omitempty"`
	IMEILock    bool   `json:"imeiLock"`
	IMEI        string `json:"imei,omitempty"`
	StaticIP    string `json:"staticIp,omitempty"`
	Usage       *struct {
		UpBytes    int64 `json:"upBytes"`
		DownBytes  int64 `json:"downBytes"`
		QuotaBytes int64 `json:"quotaBytes"`
	} `json:"usage,omitempty"`
}

type cliJob struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Total  int    `json:"total"`
	Done   int    `json:"done"`
	Failed int    `json:"failed"`
	Errors []struct {
		Row   int    `json:"row"`
		ICCID string `json:"iccid"`
		Error string `json:"error"`
	} `json:"errors"`
}

func simCommand() *cobra.Command {
	c := &cobra.Command{Use: "sim", Short: "SIM cards of the private 4G/5G network: create, list, bind, change state, import"}
	c.AddCommand(simCreate(), simGet(), simList(), simState(), simBind(), simKeys(), simImport(), simAudit())
	return c
}

// simKeys replaces a SIM's Ki and OPc; the hub pushes them to the mobile
// core at once.
func simKeys() *cobra.Command {
	var ki, opc string
	c := &cobra.Command{Use: "keys ICCID [--ki HEX] [--opc HEX]", Short: "Replace a SIM's Ki and/or OPc (32 hex digits each); the mobile core gets them at once",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			p := map[string]any{}
			if ki != "" {
				p["ki"] = ki
			}
			if opc != "" {
				p["opc"] = opc
			}
			if len(p) == 0 {
				return errors.New("nothing to change: give --ki, --opc or both")
			}
			return patchSIM(cmd, client, args[0], p)
		}}
	c.Flags().StringVar(&ki, "ki", "", "the new subscriber key, 32 hex digits")
	c.Flags().StringVar(&opc, "opc", "", "the new OPc, 32 hex digits")
	return c
}

// patchSIM changes a SIM and shows it.
func patchSIM(cmd *cobra.Command, client *Client, iccid string, p map[string]any) error {
	var s cliSIM
	if err := client.Do(cmd.Context(), "PATCH", connPath+"/sims/"+url.PathEscape(iccid), p, &s); err != nil {
		return err
	}
	return render(cmd, s, func(w io.Writer) { simTable(w, s) })
}

// coreCommand shows the mobile core's link and what it holds.
func coreCommand() *cobra.Command {
	c := &cobra.Command{Use: "core", Short: "The mobile core (SD-Core): link, and per device group, slice and SIM whether it is in sync"}
	c.AddCommand(&cobra.Command{Use: "status", Short: "Whether the hub reaches and may log in to the core, and what is in sync, pending or failed (with the core's error)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var st struct {
				Link          string         `json:"link"`
				LinkDetail    string         `json:"linkDetail"`
				LastReconcile string         `json:"lastReconcile"`
				Unmanaged     int            `json:"unmanaged"`
				Counts        map[string]int `json:"counts"`
				Objects       []struct {
					Kind   string `json:"kind"`
					Name   string `json:"name"`
					State  string `json:"state"`
					Detail string `json:"detail"`
				} `json:"objects"`
			}
			if err := client.Do(cmd.Context(), "GET", connPath+"/core", nil, &st); err != nil {
				return err
			}
			return render(cmd, st, func(w io.Writer) {
				fmt.Fprintf(w, "link: %s", st.Link)
				if st.LinkDetail != "" {
					fmt.Fprintf(w, " (%s)", st.LinkDetail)
				}
				fmt.Fprintf(w, "\nin sync %d, pending %d, failed %d; unmanaged in the core %d; last compared %s\n",
					st.Counts["in_sync"], st.Counts["pending"], st.Counts["failed"], st.Unmanaged, orNever(st.LastReconcile))
				row(w, "KIND", "NAME", "STATE", "DETAIL")
				for _, o := range st.Objects {
					row(w, o.Kind, o.Name, o.State, o.Detail)
				}
			})
		}})
	return c
}

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

func simTable(w io.Writer, sims ...cliSIM) {
	row(w, "ICCID", "IMSI", "STATE", "DEVICE", "IMEI", "LABEL")
	for _, s := range sims {
		st := s.State
		if s.SystemState != "" {
			st += " (" + s.SystemState + ")"
		}
		imei := s.IMEI
		if s.IMEILock && imei == "" {
			imei = "(locks on first use)"
		}
		row(w, s.ICCID, s.IMSI, st, s.Device, imei, s.Label)
	}
}

func simCreate() *cobra.Command {
	var imsi, label, msisdn string
	c := &cobra.Command{Use: "create ICCID --imsi IMSI", Short: "Add a SIM; it starts in INVENTORY", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var s cliSIM
			if err := client.Do(cmd.Context(), "POST", connPath+"/sims", map[string]string{"iccid": args[0], "imsi": imsi, "label": label, "msisdn": msisdn}, &s); err != nil {
				return err
			}
			return render(cmd, s, func(w io.Writer) { simTable(w, s) })
		}}
	c.Flags().StringVar(&imsi, "imsi", "", "the SIM's IMSI (15 digits)")
	c.Flags().StringVar(&label, "label", "", "a label")
	c.Flags().StringVar(&msisdn, "msisdn", "", "the phone number, if any")
	_ = c.MarkFlagRequired("imsi")
	return c
}

func simGet() *cobra.Command {
	return &cobra.Command{Use: "get ICCID", Short: "Show a SIM with its usage this billing cycle", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var s cliSIM
			if err := client.Do(cmd.Context(), "GET", connPath+"/sims/"+url.PathEscape(args[0]), nil, &s); err != nil {
				return err
			}
			return render(cmd, s, func(w io.Writer) {
				simTable(w, s)
				if s.Usage != nil {
					fmt.Fprintf(w, "\nusage this cycle: %d bytes up, %d bytes down", s.Usage.UpBytes, s.Usage.DownBytes)
					if s.Usage.QuotaBytes > 0 {
						fmt.Fprintf(w, " of a %d byte quota", s.Usage.QuotaBytes)
					}
					fmt.Fprintln(w)
				}
			})
		}}
}

func simList() *cobra.Command {
	var state, label, device string
	var limit int
	c := &cobra.Command{Use: "list", Short: "List SIMs (all pages)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var all []cliSIM
			after := ""
			for {
				q := url.Values{"state": {state}, "label": {label}, "device": {device}, "after": {after}, "limit": {"1000"}}
				var page struct {
					Items []cliSIM `json:"items"`
					Next  string   `json:"next"`
				}
				if err := client.Do(cmd.Context(), "GET", connPath+"/sims?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				all = append(all, page.Items...)
				if page.Next == "" || (limit > 0 && len(all) >= limit) {
					break
				}
				after = page.Next
			}
			if limit > 0 && len(all) > limit {
				all = all[:limit]
			}
			return render(cmd, all, func(w io.Writer) { simTable(w, all...) })
		}}
	c.Flags().StringVar(&state, "state", "", "only SIMs in this state")
	c.Flags().StringVar(&label, "label", "", "only SIMs whose label starts with this")
	c.Flags().StringVar(&device, "device", "", "only the SIM of this device")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many (0: all)")
	return c
}

func simState() *cobra.Command {
	var at string
	c := &cobra.Command{Use: "state ICCID STATE", Short: "Change a SIM's state (INVENTORY, TEST_READY, ACTIVATED, SUSPENDED, TERMINATED), now or --at a time",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			body := map[string]any{"state": strings.ToUpper(args[1])}
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("--at must be an RFC 3339 time such as 2026-03-02T18:00:00Z, not %q", at)
				}
				body["at"] = t
				var sc map[string]any
				if err := client.Do(cmd.Context(), "POST", connPath+"/sims/"+url.PathEscape(args[0])+"/state", body, &sc); err != nil {
					return err
				}
				return render(cmd, sc, func(w io.Writer) { fmt.Fprintf(w, "scheduled %v for %v\n", sc["to"], sc["at"]) })
			}
			var s cliSIM
			if err := client.Do(cmd.Context(), "POST", connPath+"/sims/"+url.PathEscape(args[0])+"/state", body, &s); err != nil {
				return err
			}
			return render(cmd, s, func(w io.Writer) { simTable(w, s) })
		}}
	c.Flags().StringVar(&at, "at", "", "schedule the change for this time (RFC 3339)")
	return c
}

func simBind() *cobra.Command {
	var device string
	var lock, unlock, clear bool
	c := &cobra.Command{Use: "bind ICCID --device DEVICE [--imei-lock]", Short: "Bind a SIM to a device (empty unbinds) and set its IMEI lock",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			p := map[string]any{}
			if cmd.Flags().Changed("device") {
				p["device"] = device
			}
			if lock || unlock {
				p["imeiLock"] = lock
			}
			if clear {
				p["clearImei"] = true
			}
			if len(p) == 0 {
				return errors.New("nothing to change: give --device, --imei-lock, --no-imei-lock or --clear-imei")
			}
			return patchSIM(cmd, client, args[0], p)
		}}
	c.Flags().StringVar(&device, "device", "", "device id")
	c.Flags().BoolVar(&lock, "imei-lock", false, "lock the SIM to the first IMEI it connects with")
	c.Flags().BoolVar(&unlock, "no-imei-lock", false, "turn the IMEI lock off")
	c.Flags().BoolVar(&clear, "clear-imei", false, "forget the bound IMEI")
	return c
}

func simAudit() *cobra.Command {
	return &cobra.Command{Use: "audit [ICCID]", Short: "Who changed which SIM's state, when, from and to", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			q := url.Values{"limit": {"1000"}}
			if len(args) == 1 {
				q.Set("iccid", args[0])
			}
			var page struct {
				Items []struct {
					ID, ICCID, Actor, From, To, Reason string
					At                                 time.Time
				} `json:"items"`
			}
			if err := client.Do(cmd.Context(), "GET", connPath+"/audit?"+q.Encode(), nil, &page); err != nil {
				return err
			}
			return render(cmd, page.Items, func(w io.Writer) {
				row(w, "AT", "ICCID", "FROM", "TO", "ACTOR", "REASON")
				for _, e := range page.Items {
					row(w, e.At.Format(time.RFC3339), e.ICCID, e.From, e.To, e.Actor, e.Reason)
				}
			})
		}}
}

// simImport reads a CSV of SIMs (header iccid,imsi[,msisdn,label,ki,opc]),
// sends it in chunks as import jobs and polls them, with a progress bar.
func simImport() *cobra.Command {
	var chunk int
	var quiet bool
	c := &cobra.Command{Use: "import FILE.csv", Short: "Create SIMs from a CSV file (header iccid,imsi,msisdn,label,ki,opc); bad rows fail alone and are listed",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if chunk < 1 {
				return fmt.Errorf("--chunk must be at least 1, not %d", chunk)
			}
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open the CSV file: %w", err)
			}
			defer f.Close()
			cr := csv.NewReader(f)
			cr.FieldsPerRecord = -1
			header, err := cr.Read()
			if err != nil {
				return fmt.Errorf("%s: read the header row (iccid,imsi,msisdn,label,ki,opc): %w", args[0], err)
			}
			col := map[string]int{}
			for i, h := range header {
				col[strings.ToLower(strings.TrimSpace(h))] = i
			}
			for _, need := range []string{"iccid", "imsi"} {
				if _, ok := col[need]; !ok {
					return fmt.Errorf("%s: the header row has no %q column; it needs iccid,imsi and may have msisdn,label,ki,opc", args[0], need)
				}
			}
			var rows []map[string]string
			var lines []int
			for {
				rec, err := cr.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				line, _ := cr.FieldPos(0)
				m := map[string]string{}
				for name, i := range col {
					if i < len(rec) && rec[i] != "" && (name == "iccid" || name == "imsi" || name == "msisdn" || name == "label" || name == "ki" || name == "opc") {
						m[name] = rec[i]
					}
				}
				rows = append(rows, m)
				lines = append(lines, line)
			}
			var progress io.Writer = cmd.ErrOrStderr()
			if quiet {
				progress = io.Discard
			}
			bar := progressbar.NewOptions(len(rows), progressbar.OptionSetWriter(progress), progressbar.OptionSetDescription("importing SIMs"),
				progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
			created, failed := 0, 0
			type failure struct {
				line  int
				iccid string
				err   string
			}
			var failures []failure
			for start := 0; start < len(rows); start += chunk {
				part := rows[start:min(start+chunk, len(rows))]
				var j cliJob
				if err := client.Do(cmd.Context(), "POST", connPath+"/sims/import", map[string]any{"sims": part}, &j); err != nil {
					_ = bar.Exit()
					return fmt.Errorf("after %d of %d rows: %w", start, len(rows), err)
				}
				for j.Status != "done" {
					select {
					case <-cmd.Context().Done():
						return cmd.Context().Err()
					case <-time.After(100 * time.Millisecond):
					}
					if err := client.Do(cmd.Context(), "GET", connPath+"/jobs/"+j.ID, nil, &j); err != nil {
						return err
					}
					_ = bar.Set(start + j.Done + j.Failed)
				}
				created += j.Done
				failed += j.Failed
				for _, e := range j.Errors {
					l := 0
					if e.Row > 0 && start+e.Row-1 < len(lines) {
						l = lines[start+e.Row-1]
					}
					failures = append(failures, failure{l, e.ICCID, e.Error})
				}
				_ = bar.Set(start + len(part))
			}
			_ = bar.Finish()
			out := map[string]any{"created": created, "failed": failed}
			if err := render(cmd, out, func(w io.Writer) {
				if len(failures) > 0 {
					row(w, "LINE", "ICCID", "ERROR")
					for _, f := range failures {
						row(w, f.line, f.iccid, f.err)
					}
					fmt.Fprintln(w)
				}
				fmt.Fprintf(w, "created %s, %s failed\n", plural(created, "SIM"), plural(failed, "row"))
			}); err != nil {
				return err
			}
			if failed > 0 {
				return rowsFailedError{failed: failed, total: created + failed}
			}
			return nil
		}}
	c.Flags().IntVar(&chunk, "chunk", 50000, "rows per import job")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return c
}

// objectCommand is list/get/apply/delete for device groups and slices.
func objectCommand(use, path, short string, columns []string, cells func(m map[string]any) []any) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	table := func(w io.Writer, items ...map[string]any) {
		hdr := make([]any, len(columns))
		for i, h := range columns {
			hdr[i] = h
		}
		row(w, hdr...)
		for _, m := range items {
			row(w, cells(m)...)
		}
	}
	c.AddCommand(&cobra.Command{Use: "list", Short: "List them", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		client, err := ClientFrom(cmd)
		if err != nil {
			return err
		}
		var out struct {
			Items []map[string]any `json:"items"`
		}
		if err := client.Do(cmd.Context(), "GET", connPath+"/"+path, nil, &out); err != nil {
			return err
		}
		return render(cmd, out.Items, func(w io.Writer) { table(w, out.Items...) })
	}})
	c.AddCommand(&cobra.Command{Use: "get NAME", Short: "Show one", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		client, err := ClientFrom(cmd)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := client.Do(cmd.Context(), "GET", connPath+"/"+path+"/"+url.PathEscape(args[0]), nil, &m); err != nil {
			return err
		}
		return render(cmd, m, func(w io.Writer) { table(w, m) })
	}})
	var file string
	apply := &cobra.Command{Use: "apply NAME -f FILE.json", Short: "Create or replace one from a JSON file (- for stdin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var r io.Reader = cmd.InOrStdin()
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("open %s: %w", file, err)
				}
				defer f.Close()
				r = f
			}
			var body map[string]any
			if err := json.NewDecoder(r).Decode(&body); err != nil {
				return fmt.Errorf("%s is not a JSON object: %w", file, err)
			}
			var m map[string]any
			if err := client.Do(cmd.Context(), "PUT", connPath+"/"+path+"/"+url.PathEscape(args[0]), body, &m); err != nil {
				return err
			}
			return render(cmd, m, func(w io.Writer) { table(w, m) })
		}}
	apply.Flags().StringVarP(&file, "file", "f", "-", "JSON file")
	c.AddCommand(apply)
	c.AddCommand(&cobra.Command{Use: "delete NAME", Short: "Delete one (refused while something uses it)", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		client, err := ClientFrom(cmd)
		if err != nil {
			return err
		}
		if err := client.Do(cmd.Context(), "DELETE", connPath+"/"+path+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
		return nil
	}})
	return c
}

func count(v any) int {
	l, _ := v.([]any)
	return len(l)
}

func deviceGroupCommand() *cobra.Command {
	return objectCommand("devicegroup", "device-groups", "Device groups: devices sharing an IP domain, bitrate and traffic class",
		[]string{"NAME", "SITE", "DEVICES", "DNN", "SUBNET", "MBR UP", "MBR DOWN", "TRAFFIC CLASS"},
		func(m map[string]any) []any {
			ip, _ := m["ipDomain"].(map[string]any)
			return []any{m["name"], m["site"], count(m["devices"]), ip["dnn"], ip["subnet"], m["mbrUplink"], m["mbrDownlink"], m["trafficClass"]}
		})
}

func sliceCommand() *cobra.Command {
	return objectCommand("slice", "slices", "Network slices: SST/SD, device groups, application filters, bitrate",
		[]string{"NAME", "SITE", "SST", "SD", "GROUPS", "DEFAULT", "FILTERS"},
		func(m map[string]any) []any {
			return []any{m["name"], m["site"], m["sst"], m["sd"], count(m["deviceGroups"]), m["defaultBehavior"], count(m["filters"])}
		})
}
