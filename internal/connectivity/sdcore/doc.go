// Package sdcore is the southbound adapter from connectivity.Core to the
// SD-Core (ONF Aether / omec-project) web console's configuration REST API:
//
//	POST/DELETE /api/subscriber/imsi-{imsi}
//	POST/DELETE /config/v1/device-group/{name}
//	POST/DELETE /config/v1/network-slice/{name}
//
// The payloads follow what ONF documents: the REST configuration guide in
// omec-project/sdcore-docs (configuration/config_rest.rst: subscriber
// {"UeId","plmnId","opc","key","sequenceNumber"}; device group "imsis",
// "site-info", "ip-domain-name", "ip-domain-expanded" with "ue-dnn-qos" and
// "traffic-class"; network slice "slice-id", "qos", "site-device-group",
// "site-info" with "plmn", "gNodeBs" and "upf", and
// "application-filtering-rules"), and the field names of the application
// filtering rules in omec-project/webconsole's configapi (rule-name,
// priority, action, endpoint, dest-port-start, dest-port-end, protocol).
// POST is an upsert there, so every call is idempotent; a DELETE of a
// missing object (404) counts as done. Retries belong to the caller
// (connectivity's outbox pusher).
//
// It imports only internal/connectivity.
package sdcore
