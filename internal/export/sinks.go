package export

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/prometheus/prompb"

	"github.com/shopfloor/shopfloor/internal/egress"
)

// sink delivers records; Write returns only after the destination accepted
// them (durably, where it can say so).
type sink interface {
	Write(ctx context.Context, recs []Record) error
	Close() error
}

// Sign is the X-Shopfloor-Signature value of body: sha256=<hex HMAC>.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// WebhookBody is the JSON a webhook destination POSTs.
type WebhookBody struct {
	Export  string   `json:"export"`
	Records []Record `json:"records"`
}

type webhookSink struct {
	d      Destination
	client *http.Client
}

func post(ctx context.Context, client *http.Client, d Destination, body []byte, header http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range d.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		// The destination's last error is shown to the tenant: Describe
		// keeps resolved addresses and ports out of it.
		return fmt.Errorf("export %s: POST %s: %w", d.Name, req.URL.Redacted(), egress.Describe(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("export %s: %s answered %s", d.Name, req.URL.Redacted(), resp.Status)
	}
	return nil
}

func (s *webhookSink) Write(ctx context.Context, recs []Record) error {
	for chunk := range slices.Chunk(recs, s.d.batchSize()) {
		body, err := json.Marshal(WebhookBody{Export: s.d.Name, Records: chunk})
		if err != nil {
			return err
		}
		h := http.Header{"Content-Type": {"application/json"}}
		if s.d.Secret != "" {
			h.Set("X-Shopfloor-Signature", Sign(s.d.Secret, body))
		}
		if err := post(ctx, s.client, s.d, body, h); err != nil {
			return err
		}
	}
	return nil
}

func (s *webhookSink) Close() error { return nil }

type natsSink struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	subject string
}

func (s *natsSink) Write(ctx context.Context, recs []Record) error {
	if s.js != nil {
		futs := make([]jetstream.PubAckFuture, 0, len(recs))
		for _, r := range recs {
			b, _ := json.Marshal(r)
			f, err := s.js.PublishAsync(s.subject, b)
			if err != nil {
				return fmt.Errorf("publish to JetStream subject %s: %w", s.subject, err)
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("publish to JetStream subject %s (is there a stream for it?): %w", s.subject, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	for _, r := range recs {
		b, _ := json.Marshal(r)
		if err := s.nc.Publish(s.subject, b); err != nil {
			return fmt.Errorf("publish to NATS subject %s: %w", s.subject, err)
		}
	}
	// FlushWithContext needs a deadline.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return s.nc.FlushWithContext(fctx)
}

func (s *natsSink) Close() error { return nil }

type remoteWriteSink struct {
	d      Destination
	client *http.Client
}

// metricName turns a field path into a Prometheus metric name.
func metricName(field string) string {
	var b strings.Builder
	for i, c := range field {
		ok := c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if ok {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

var labelNameRE = strings.NewReplacer("-", "_", ".", "_", "/", "_", " ", "_", ":", "_")

// WriteRequest builds the remote-write request of recs: one series per
// (device, numeric field), labelled device (and site, template and tags
// when enriched), samples in time order.
func WriteRequest(recs []Record) *prompb.WriteRequest {
	type key struct{ device, field string }
	series := map[key]*prompb.TimeSeries{}
	var order []key
	for _, r := range recs {
		for f, v := range r.Values {
			if math.IsNaN(v) {
				continue
			}
			k := key{r.Device, f}
			ts := series[k]
			if ts == nil {
				lbls := []prompb.Label{{Name: "__name__", Value: metricName(f)}, {Name: "device", Value: r.Device}}
				if r.Site != "" {
					lbls = append(lbls, prompb.Label{Name: "site", Value: r.Site})
				}
				if r.Template != "" {
					lbls = append(lbls, prompb.Label{Name: "template", Value: r.Template})
				}
				for tk, tv := range r.Tags {
					n := labelNameRE.Replace(tk)
					if n == "device" || n == "site" || n == "template" || n == "__name__" {
						n = "tag_" + n
					}
					lbls = append(lbls, prompb.Label{Name: n, Value: tv})
				}
				sort.Slice(lbls, func(i, j int) bool { return lbls[i].Name < lbls[j].Name })
				ts = &prompb.TimeSeries{Labels: lbls}
				series[k] = ts
				order = append(order, k)
			}
			ts.Samples = append(ts.Samples, prompb.Sample{Value: v, Timestamp: r.TS})
		}
	}
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(order))}
	for _, k := range order {
		ts := series[k]
		sort.SliceStable(ts.Samples, func(i, j int) bool { return ts.Samples[i].Timestamp < ts.Samples[j].Timestamp })
		req.Timeseries = append(req.Timeseries, *ts)
	}
	return req
}

func (s *remoteWriteSink) Write(ctx context.Context, recs []Record) error {
	for chunk := range slices.Chunk(recs, s.d.batchSize()) {
		req := WriteRequest(chunk)
		if len(req.Timeseries) == 0 {
			continue
		}
		raw, err := req.Marshal()
		if err != nil {
			return err
		}
		h := http.Header{
			"Content-Type":                      {"application/x-protobuf"},
			"Content-Encoding":                  {"snappy"},
			"X-Prometheus-Remote-Write-Version": {"0.1.0"},
			"User-Agent":                        {"shopfloor-export"},
		}
		if err := post(ctx, s.client, s.d, snappy.Encode(nil, raw), h); err != nil {
			return err
		}
	}
	return nil
}

func (s *remoteWriteSink) Close() error { return nil }

// fileSink appends NDJSON to <dir>/current.ndjson, fsyncs every batch, and
// rotates to <dir>/export-<unix ns>.ndjson past MaxBytes, keeping MaxFiles
// rotated files.
type fileSink struct {
	dir      string
	maxBytes int64
	maxFiles int
	f        *os.File
	size     int64
	now      func() time.Time
}

func newFileSink(dir string, d Destination) (*fileSink, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("export %s: create %s: %w", d.Name, dir, err)
	}
	s := &fileSink{dir: dir, maxBytes: d.MaxBytes, maxFiles: d.MaxFiles, now: time.Now}
	if s.maxBytes <= 0 {
		s.maxBytes = 64 << 20
	}
	if s.maxFiles <= 0 {
		s.maxFiles = 10
	}
	return s, s.open()
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(filepath.Join(s.dir, "current.ndjson"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open export file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, st.Size()
	return nil
}

func (s *fileSink) Write(_ context.Context, recs []Record) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if s.size > 0 && s.size+int64(buf.Len()) > s.maxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(buf.Bytes())
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("write export file: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync export file: %w", err)
	}
	return nil
}

func (s *fileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return err
	}
	name := filepath.Join(s.dir, fmt.Sprintf("export-%020d.ndjson", s.now().UnixNano()))
	if err := os.Rename(filepath.Join(s.dir, "current.ndjson"), name); err != nil {
		return fmt.Errorf("rotate export file: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(s.dir, "export-*.ndjson"))
	sort.Strings(old)
	for len(old) > s.maxFiles {
		_ = os.Remove(old[0])
		old = old[1:]
	}
	return s.open()
}

func (s *fileSink) Close() error { return s.f.Close() }
