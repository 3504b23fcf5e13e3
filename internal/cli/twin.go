package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// twinCommand, methodCommand and c2dCommand reach devices: twins, direct
// methods and cloud-to-device messages.

func twinCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "twin", Short: "Read and change device twins (tags, desired and reported properties)"}
	cmd.AddCommand(&cobra.Command{
		Use: "get DEVICE", Short: "Show a device's twin", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var t json.RawMessage
			if err := c.Do(cmd.Context(), "GET", "/api/v1/devices/"+url.PathEscape(args[0])+"/twin", nil, &t); err != nil {
				return err
			}
			return renderTwin(cmd, t)
		},
	})
	var desired, tags, etag string
	patch := &cobra.Command{
		Use:   "patch DEVICE",
		Short: "Merge tags and desired properties into a twin (JSON merge patch: null removes a key)",
		Example: `  shopfloor twin patch press-7 --desired '{"setpoint": 72.5}'
  shopfloor twin patch press-7 --tags '{"line": "3"}' --etag '"12"'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if tags != "" {
				body["tags"] = json.RawMessage(tags)
			}
			if desired != "" {
				body["properties"] = map[string]any{"desired": json.RawMessage(desired)}
			}
			if len(body) == 0 {
				return fmt.Errorf("nothing to change: give --desired and/or --tags as JSON objects")
			}
			for name, v := range map[string]string{"--tags": tags, "--desired": desired} {
				if v != "" && !json.Valid([]byte(v)) {
					return fmt.Errorf("%s is not valid JSON: give an object such as '{\"setpoint\": 72.5}'", name)
				}
			}
			c, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			data, err := json.Marshal(body)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(cmd.Context(), "PATCH", c.BaseURL+"/api/v1/devices/"+url.PathEscape(args[0])+"/twin", bytes.NewReader(data))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			if c.Token != "" {
				req.Header.Set("Authorization", "Bearer "+c.Token)
			}
			if c.Org != "" {
				req.Header.Set("X-Shopfloor-Org", c.Org)
			}
			if etag != "" {
				req.Header.Set("If-Match", etag)
			}
			hc := c.HTTP
			if hc == nil {
				hc = http.DefaultClient
			}
			resp, err := hc.Do(req)
			if err != nil {
				return c.transportError(cmd.Context(), err)
			}
			defer resp.Body.Close()
			if resp.StatusCode >= 400 {
				return c.apiError(resp)
			}
			t, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("read the hub's answer: %w", err)
			}
			return renderTwin(cmd, t)
		},
	}
	patch.Flags().StringVar(&desired, "desired", "", "desired properties to merge, as a JSON object")
	patch.Flags().StringVar(&tags, "tags", "", "tags to merge, as a JSON object")
	patch.Flags().StringVar(&etag, "etag", "", "change only if the twin still has this etag (from twin get)")
	cmd.AddCommand(patch)
	return cmd
}

func renderTwin(cmd *cobra.Command, raw []byte) error {
	var t struct {
		DeviceID   string          `json:"deviceId"`
		ETag       string          `json:"etag"`
		Version    int64           `json:"version"`
		Tags       json.RawMessage `json:"tags"`
		Properties struct {
			Desired  json.RawMessage `json:"desired"`
			Reported json.RawMessage `json:"reported"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("the hub's twin is not the JSON expected: %w", err)
	}
	return render(cmd, json.RawMessage(raw), func(w io.Writer) {
		kv(w, "device", t.DeviceID, "etag", t.ETag, "version", t.Version,
			"tags", string(t.Tags), "desired", string(t.Properties.Desired), "reported", string(t.Properties.Reported))
	})
}

func methodCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "method", Short: "Call direct methods on connected devices"}
	var payload string
	var timeout time.Duration
	invoke := &cobra.Command{
		Use:     "invoke DEVICE NAME",
		Short:   "Call a direct method and print the device's status and payload",
		Example: `  shopfloor method invoke press-7 reboot --payload '{"delay": 5}' --timeout 30s`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !json.Valid([]byte(payload)) {
				return fmt.Errorf("--payload is not valid JSON: give a JSON value such as '{\"delay\": 5}' or null")
			}
			secs := int(timeout / time.Second)
			if secs < 1 || secs > 300 {
				return fmt.Errorf("--timeout must be between 1s and 300s, not %s", timeout)
			}
			c, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var r struct {
				Status  int             `json:"status"`
				Payload json.RawMessage `json:"payload"`
			}
			path := "/api/v1/devices/" + url.PathEscape(args[0]) + "/methods/" + url.PathEscape(args[1]) + "?timeout=" + strconv.Itoa(secs)
			if err := c.Send(cmd.Context(), "POST", path, "application/json", strings.NewReader(payload), &r); err != nil {
				return err
			}
			return render(cmd, r, func(w io.Writer) { kv(w, "status", r.Status, "payload", string(r.Payload)) })
		},
	}
	invoke.Flags().StringVar(&payload, "payload", "null", "the method's JSON payload")
	invoke.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the device (1s to 300s)")
	cmd.AddCommand(invoke)
	return cmd
}

type c2dItem struct {
	ID            string            `json:"id"`
	Properties    map[string]string `json:"properties"`
	CreatedAt     time.Time         `json:"createdAt"`
	ExpiresAt     time.Time         `json:"expiresAt"`
	DeliveryCount int               `json:"deliveryCount"`
	State         string            `json:"state"`
	Body          *string           `json:"body,omitempty"`
	BodyBase64    *string           `json:"bodyBase64,omitempty"`
}

func c2dCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "c2d", Short: "Send cloud-to-device messages and inspect device queues"}
	var props []string
	var ttl time.Duration
	send := &cobra.Command{
		Use:     "send DEVICE BODY",
		Short:   "Queue a message for a device (delivered now if connected, else when it reconnects)",
		Example: `  shopfloor c2d send press-7 '{"command":"stop"}' --prop priority=high --ttl 2h`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			p, err := parseTags(props, "=")
			if err != nil {
				return err
			}
			for k, v := range p {
				if k == "ttl" || k == "org" {
					return fmt.Errorf("--prop %s: %q is reserved; choose another property name", k, k)
				}
				q.Set(k, v)
			}
			if ttl > 0 {
				q.Set("ttl", ttl.String())
			}
			c, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var m c2dItem
			path := "/api/v1/devices/" + url.PathEscape(args[0]) + "/messages"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			if err := c.Send(cmd.Context(), "POST", path, "application/octet-stream", strings.NewReader(args[1]), &m); err != nil {
				return err
			}
			return render(cmd, m, func(w io.Writer) { kv(w, "id", m.ID, "state", m.State, "expires", m.ExpiresAt.Format(time.RFC3339)) })
		},
	}
	send.Flags().StringArrayVar(&props, "prop", nil, "a message property as key=value; repeat for several")
	send.Flags().DurationVar(&ttl, "ttl", 0, "how long the message may wait for the device (default 1h, at most 48h)")
	var state string
	list := &cobra.Command{
		Use: "list DEVICE", Short: "List a device's pending messages, or finished ones with --state", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var r struct {
				Items []c2dItem `json:"items"`
			}
			if err := c.Do(cmd.Context(), "GET", "/api/v1/devices/"+url.PathEscape(args[0])+"/messages?state="+url.QueryEscape(state), nil, &r); err != nil {
				return err
			}
			return render(cmd, r, func(w io.Writer) {
				row(w, "ID", "STATE", "DELIVERIES", "CREATED", "EXPIRES", "PROPERTIES", "BODY")
				for _, m := range r.Items {
					body := "(binary)"
					if m.Body != nil {
						body = *m.Body
					}
					row(w, m.ID, m.State, m.DeliveryCount, m.CreatedAt.Format(time.RFC3339), m.ExpiresAt.Format(time.RFC3339), formatTags(m.Properties), body)
				}
			})
		},
	}
	list.Flags().StringVar(&state, "state", "pending", "pending, delivered, expired or rejected")
	purge := &cobra.Command{
		Use: "purge DEVICE", Short: "Drop a device's pending messages", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ClientFrom(cmd)
			if err != nil {
				return err
			}
			var r struct {
				Purged int `json:"purged"`
			}
			if err := c.Do(cmd.Context(), "DELETE", "/api/v1/devices/"+url.PathEscape(args[0])+"/messages", nil, &r); err != nil {
				return err
			}
			return render(cmd, r, func(w io.Writer) { kv(w, "purged", r.Purged) })
		},
	}
	cmd.AddCommand(send, list, purge)
	return cmd
}
