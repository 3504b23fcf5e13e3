package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the gateway's counters since New.
type Stats struct {
	Connections     int64  // devices connected now
	Connects        uint64 // connections accepted
	AuthFailures    uint64 // connections refused (bad credentials, unknown or disabled device)
	Registered      uint64 // devices registered zero-touch (enrollment group or CA)
	MessagesIn      uint64 // telemetry publishes received
	Stored          uint64 // telemetry messages durable in the bus
	Malformed       uint64 // telemetry not stored: not a usable JSON object, or a timestamp out of range
	OutOfBounds     uint64 // of Malformed: "ts" more than 7 days old or 1 hour ahead
	TooFast         uint64 // telemetry refused: over 1,000 unstamped messages a second, beyond a burst of 1,000
	Limited         uint64 // telemetry refused by a cardinality limit (fields per device, series per organization, name length)
	Oversize        uint64 // telemetry not stored: payload over MaxPayload
	Denied          uint64 // publishes refused by the topic ACL
	PublishFailures uint64 // telemetry not stored: the bus failed or timed out (not acknowledged)
	Queued          int    // telemetry messages waiting, by priority, for a slot (MaxInflight) now
	DownlinkDropped uint64 // messages to devices dropped because their throttled backlog was full
	Expired         uint64 // connections ended because their SAS token or certificate expired
	Revoked         uint64 // connections ended because their credential was revoked (key regenerated, device disabled or deleted)
}

type counters struct {
	connections     atomic.Int64
	connects        atomic.Uint64
	authFailures    atomic.Uint64
	registered      atomic.Uint64
	messagesIn      atomic.Uint64
	stored          atomic.Uint64
	malformed       atomic.Uint64
	outOfBounds     atomic.Uint64
	tooFast         atomic.Uint64
	limited         atomic.Uint64
	oversize        atomic.Uint64
	denied          atomic.Uint64
	publishFailures atomic.Uint64
	downlinkDropped atomic.Uint64
	expired         atomic.Uint64
	revoked         atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (g *Gateway) Stats() Stats {
	c := &g.stats
	return Stats{
		Connections:     c.connections.Load(),
		Connects:        c.connects.Load(),
		AuthFailures:    c.authFailures.Load(),
		Registered:      c.registered.Load(),
		MessagesIn:      c.messagesIn.Load(),
		Stored:          c.stored.Load(),
		Malformed:       c.malformed.Load(),
		OutOfBounds:     c.outOfBounds.Load(),
		TooFast:         c.tooFast.Load(),
		Limited:         c.limited.Load(),
		Oversize:        c.oversize.Load(),
		Denied:          c.denied.Load(),
		PublishFailures: c.publishFailures.Load(),
		Queued:          g.gate.queued(),
		DownlinkDropped: c.downlinkDropped.Load(),
		Expired:         c.expired.Load(),
		Revoked:         c.revoked.Load(),
	}
}

type metrics struct {
	publishSeconds prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shopfloor_gateway_publish_seconds",
			Help:    "Time from receiving a telemetry message to it being durable in the bus (the PUBACK delay).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}),
	}
}

// RegisterMetrics registers the gateway's Prometheus metrics.
func (g *Gateway) RegisterMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(g.metrics.publishSeconds); err != nil {
		return err
	}
	return reg.Register(statsCollector{g: g, descs: statDescs()})
}

type statDesc struct {
	desc    *prometheus.Desc
	gauge   bool
	collect func(Stats) float64
}

type statsCollector struct {
	g     *Gateway
	descs []statDesc
}

func statDescs() []statDesc {
	return []statDesc{
		{prometheus.NewDesc("shopfloor_gateway_connections", "Devices connected now.", nil, nil), true, func(s Stats) float64 { return float64(s.Connections) }},
		{prometheus.NewDesc("shopfloor_gateway_connects_total", "Device connections accepted.", nil, nil), false, func(s Stats) float64 { return float64(s.Connects) }},
		{prometheus.NewDesc("shopfloor_gateway_auth_failures_total", "Device connections refused.", nil, nil), false, func(s Stats) float64 { return float64(s.AuthFailures) }},
		{prometheus.NewDesc("shopfloor_gateway_registrations_total", "Devices registered zero-touch.", nil, nil), false, func(s Stats) float64 { return float64(s.Registered) }},
		{prometheus.NewDesc("shopfloor_gateway_messages_received_total", "Telemetry publishes received.", nil, nil), false, func(s Stats) float64 { return float64(s.MessagesIn) }},
		{prometheus.NewDesc("shopfloor_gateway_messages_stored_total", "Telemetry messages durable in the bus.", nil, nil), false, func(s Stats) float64 { return float64(s.Stored) }},
		{prometheus.NewDesc("shopfloor_gateway_messages_malformed_total", "Telemetry messages not stored because malformed.", nil, nil), false, func(s Stats) float64 { return float64(s.Malformed) }},
		{prometheus.NewDesc("shopfloor_gateway_messages_out_of_bounds_total", "Telemetry messages refused because their timestamp was more than 7 days old or 1 hour ahead (counted in malformed too).", nil, nil), false, func(s Stats) float64 { return float64(s.OutOfBounds) }},
		{prometheus.NewDesc("shopfloor_gateway_messages_too_fast_total", "Telemetry messages without a timestamp refused because their device sent more than 1,000 a second (beyond a burst of 1,000).", nil, nil), false, func(s Stats) float64 { return float64(s.TooFast) }},
		{prometheus.NewDesc("shopfloor_gateway_messages_limited_total", "Telemetry messages refused by a cardinality limit (fields per device, series per organization, field-name length).", nil, nil), false, func(s Stats) float64 { return float64(s.Limited) }},
		{prometheus.NewDesc("shopfloor_gateway_messages_oversize_total", "Telemetry messages refused for size.", nil, nil), false, func(s Stats) float64 { return float64(s.Oversize) }},
		{prometheus.NewDesc("shopfloor_gateway_acl_denied_total", "Publishes refused by the topic ACL.", nil, nil), false, func(s Stats) float64 { return float64(s.Denied) }},
		{prometheus.NewDesc("shopfloor_gateway_publish_failures_total", "Telemetry messages the bus did not store (not acknowledged).", nil, nil), false, func(s Stats) float64 { return float64(s.PublishFailures) }},
		{prometheus.NewDesc("shopfloor_gateway_downlink_dropped_total", "Messages to devices dropped because the device's downlink was throttled and its backlog full.", nil, nil), false, func(s Stats) float64 { return float64(s.DownlinkDropped) }},
		{prometheus.NewDesc("shopfloor_gateway_credential_expired_total", "Connections ended because their SAS token or client certificate expired.", nil, nil), false, func(s Stats) float64 { return float64(s.Expired) }},
		{prometheus.NewDesc("shopfloor_gateway_credential_revoked_total", "Connections ended because their credential was revoked (key regenerated, device disabled or deleted).", nil, nil), false, func(s Stats) float64 { return float64(s.Revoked) }},
		{prometheus.NewDesc("shopfloor_gateway_ingest_queued", "Telemetry messages waiting, by their device's priority, because the hub is saturated.", nil, nil), true, func(s Stats) float64 { return float64(s.Queued) }},
	}
}

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.Stats()
	for _, d := range c.descs {
		t := prometheus.CounterValue
		if d.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(d.desc, t, d.collect(s))
	}
}
