package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// UserAgent identifies the command line to the hub (api.CLIUserAgent).
const UserAgent = "shopfloor-cli/1"

// ErrUnreachable wraps failures to reach the hub at all.
var ErrUnreachable = errors.New("cannot reach the hub")

// Client calls the hub's REST API with a token, optionally acting on a
// customer organization. Commands build it with ClientFrom.
type Client struct {
	// BaseURL is the hub, e.g. http://localhost:8080; paths are joined to it.
	BaseURL string
	Token   string
	// Org, when set, is sent as X-Shopfloor-Org: an operator-organization
	// token then acts on that customer organization.
	Org  string
	HTTP *http.Client
}

// APIError is an error answer of the hub.
type APIError struct {
	Status  int
	Code    string // the API's error code: invalid, not_found, conflict, …
	Message string // the API's message
	Hint    string // what to change on this side, if anything
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("the hub answered %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// NewClient checks baseURL and returns a client for it.
func NewClient(baseURL, token, org string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hub URL %q must look like http://host:port (check --url or SHOPFLOOR_URL)", baseURL)
	}
	return &Client{
		BaseURL: u.String(),
		Token:   token,
		Org:     org,
		HTTP:    &http.Client{Timeout: 5 * time.Minute},
	}, nil
}

// ClientFrom builds the client from the command's --url, --token and --org
// (flag, then SHOPFLOOR_* environment, then the config file).
func ClientFrom(cmd *cobra.Command) (*Client, error) {
	s, err := settingsFrom(cmd)
	if err != nil {
		return nil, err
	}
	return NewClient(s.URL, s.Token, s.Org)
}

// Do sends body as JSON (none when nil) and decodes a JSON answer into out.
// out may be nil (answer discarded), a *[]byte or an io.Writer (answer
// copied raw), or anything encoding/json decodes into.
func (c *Client) Do(ctx context.Context, method, path string, body any, out any) error {
	if body == nil {
		return c.Send(ctx, method, path, "", nil, out)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode the request: %w", err)
	}
	return c.Send(ctx, method, path, "application/json", bytes.NewReader(data), out)
}

// Send is Do with a body of any content type, e.g. text/csv.
func (c *Client) Send(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return fmt.Errorf("build the request for %s: %w", path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	// The hub's audit log records changes made with this as made through
	// the command line.
	req.Header.Set("User-Agent", UserAgent)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Org != "" {
		req.Header.Set("X-Shopfloor-Org", c.Org)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return c.apiError(resp)
	}
	switch o := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
	case *[]byte:
		*o, err = io.ReadAll(resp.Body)
	case io.Writer:
		_, err = io.Copy(o, resp.Body)
	default:
		if resp.StatusCode == http.StatusNoContent {
			return nil
		}
		err = json.NewDecoder(resp.Body).Decode(out)
		if err != nil {
			return fmt.Errorf("the hub's answer to %s %s is not the JSON expected (is %s a Shopfloor hub?): %w", method, path, c.BaseURL, err)
		}
	}
	if err != nil {
		return fmt.Errorf("read the hub's answer: %w", err)
	}
	return nil
}

func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w at %s: no answer in time; check --url or SHOPFLOOR_URL and that the hub is running: %v", ErrUnreachable, c.BaseURL, err)
	}
	// Connection refused, unknown host, TLS trouble: unwrap url.Error to
	// keep the message short.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w at %s: %v; check --url or SHOPFLOOR_URL and that the hub is running", ErrUnreachable, c.BaseURL, err)
}

func (c *Client) apiError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{Status: resp.StatusCode}
	var body struct {
		Error json.RawMessage `json:"error"`
		// The Prometheus API's envelope.
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
	}
	if json.Unmarshal(data, &body) == nil && len(body.Error) > 0 {
		var detail struct{ Code, Message string }
		var promMsg string
		switch {
		case json.Unmarshal(body.Error, &detail) == nil:
			e.Code, e.Message = detail.Code, detail.Message
		case json.Unmarshal(body.Error, &promMsg) == nil:
			e.Code, e.Message = body.ErrorType, promMsg
		}
	}
	if e.Message == "" {
		text := strings.TrimSpace(string(data))
		if len(text) > 200 {
			text = text[:200] + "…"
		}
		e.Message = fmt.Sprintf("the hub answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if text != "" {
			e.Message += ": " + text
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		if c.Token == "" {
			e.Hint = "no token given: set --token or SHOPFLOOR_TOKEN"
		} else {
			e.Hint = "set --token or SHOPFLOOR_TOKEN to a valid API token"
		}
	case http.StatusNotFound:
		if c.Org != "" && strings.Contains(e.Message, "organization") {
			e.Hint = "check --org or SHOPFLOOR_ORG"
		}
	}
	return e
}

// page is one page of a listed collection.
type page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

// listPages reads path?q from the cursor after: with limit > 0 one page of
// that size, otherwise every page (1,000 items at a time). Items is never
// nil, so JSON output shows an empty list as [].
func listPages[T any](ctx context.Context, c *Client, path string, q url.Values, after string, limit int) (page[T], error) {
	size := 1000
	if limit > 0 {
		size = limit
	}
	q.Set("limit", strconv.Itoa(size))
	all := page[T]{Items: []T{}}
	for cursor := after; ; {
		if cursor != "" {
			q.Set("after", cursor)
		}
		var p page[T]
		if err := c.Do(ctx, "GET", path+"?"+q.Encode(), nil, &p); err != nil {
			return all, err
		}
		all.Items = append(all.Items, p.Items...)
		all.Next = p.Next
		if limit > 0 || p.Next == "" {
			return all, nil
		}
		cursor = p.Next
	}
}
