// Package bus owns the durable message bus: a NATS JetStream stream that
// carries telemetry from the gateway to its consumers (tsdb writer, rules,
// anomaly detection, exports). NATS runs embedded in-process by default, or
// an external server or cluster is used by URL; the code path is the same.
//
// Publishing is group-committed: concurrent Publish calls are batched into
// one JetStream message, and each call returns only once its batch is stored
// in the stream, so a gateway can acknowledge a device only after the
// message is durable.
//
// It owns the naming of the hub's subjects (Subjects) and each
// organization's subject space, the only subjects a tenant's rule or export
// may publish on (CheckOrgSubject).
//
// It must not import the gateway, registry, tsdb or api packages.
package bus
