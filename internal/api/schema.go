package api

import (
	"net/http"
)

// schema is a JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1).
type schema = map[string]any

const deviceIDPattern = `^[A-Za-z0-9._:-]{1,128}$`

func ref(name string) schema { return schema{"$ref": "#/components/schemas/" + name} }

func str(desc string) schema { return schema{"type": "string", "description": desc} }

func strEnum(desc string, values ...string) schema {
	return schema{"type": "string", "description": desc, "enum": values}
}

func integer(desc string, min int) schema {
	return schema{"type": "integer", "description": desc, "minimum": min}
}

func boolean(desc string) schema { return schema{"type": "boolean", "description": desc} }

func dateTime(desc string) schema {
	return schema{"type": "string", "format": "date-time", "description": desc}
}

func arrayOf(items schema) schema { return schema{"type": "array", "items": items} }

func tags() schema {
	return schema{"type": "object", "description": "free-form key/value labels", "additionalProperties": schema{"type": "string"}}
}

// object is a response object: the listed fields are always present; a newer
// hub may add fields, so others are allowed.
func object(desc string, required []string, props schema) schema {
	return schema{"type": "object", "description": desc, "required": nonNil(required), "properties": props}
}

// input is a request object: unknown fields are refused, as the decoder does.
func input(desc string, required []string, props schema) schema {
	s := object(desc, required, props)
	s["additionalProperties"] = false
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// components are the named schemas of the OpenAPI document.
func components() map[string]schema {
	roles := []string{"viewer", "operator", "admin"}
	auth := []string{"sas", "x509_self", "x509_ca"}
	aggs := []string{"avg", "min", "max", "sum", "count", "last"}
	return map[string]schema{
		"Error": object("every error response", []string{"error"}, schema{
			"error": object("", []string{"code", "message"}, schema{
				"code": strEnum("machine-readable error class", "invalid", "unauthorized", "forbidden", "not_found",
					"conflict", "method_not_allowed", "unsupported_media_type", "unavailable", "timeout", "internal",
					"precondition_failed", "too_large", "device_offline", "queue_full"),
				"message": str("what was wrong and what to do, for a person"),
			}),
		}),
		"Health": object("readiness", []string{"status"}, schema{"status": strEnum("", "ok", "unavailable")}),
		"Org": object("an organization (tenant)", []string{"id", "name", "retentionDays", "createdAt"}, schema{
			"id":            str("organization id"),
			"name":          str("display name"),
			"parent":        str("the operator organization, for a customer organization"),
			"retentionDays": integer("days telemetry is kept", 1),
			"createdAt":     dateTime(""),
		}),
		"OrgList": object("", []string{"items"}, schema{"items": arrayOf(ref("Org"))}),
		"CreateOrg": input("a new customer organization", []string{"name"}, schema{
			"id":            schema{"type": "string", "pattern": `^[a-z0-9][a-z0-9-]{0,62}$`, "description": "id; generated from the name when empty"},
			"name":          str("display name"),
			"retentionDays": integer("days telemetry is kept (default 30)", 1),
		}),
		"PatchOrg": input("organization settings to change", []string{"retentionDays"}, schema{
			"retentionDays": integer("days telemetry is kept", 1),
		}),
		"Token": object("an API token", []string{"id", "org", "name", "role", "createdAt"}, schema{
			"id":        str("token id (not the secret)"),
			"org":       str("organization the token acts in"),
			"name":      str("what the token is for"),
			"role":      strEnum("", roles...),
			"createdAt": dateTime(""),
			"token":     str("the secret, only in the response that creates the token"),
		}),
		"TokenList": object("", []string{"items"}, schema{"items": arrayOf(ref("Token"))}),
		"CreateToken": input("a new API token", []string{"name", "role"}, schema{
			"name": schema{"type": "string", "minLength": 1, "description": "what the token is for"},
			"role": strEnum("viewer reads; operator also writes devices, sites and data; admin also manages tokens, organizations, enrollment groups and CA certificates", roles...),
		}),
		"Site": object("a factory site", []string{"id", "org", "name", "createdAt"}, schema{
			"id":        str(""),
			"org":       str(""),
			"name":      str(""),
			"tags":      tags(),
			"createdAt": dateTime(""),
		}),
		"SiteList": object("", []string{"items"}, schema{"items": arrayOf(ref("Site"))}),
		"CreateSite": input("a new site", []string{"name"}, schema{
			"id":   str("site id; generated from the name when empty"),
			"name": schema{"type": "string", "minLength": 1},
			"tags": tags(),
		}),
		"Device": object("a device identity", []string{"id", "org", "disabled", "auth", "createdAt", "updatedAt", "errorCount", "connected"}, schema{
			"id":              schema{"type": "string", "pattern": deviceIDPattern},
			"org":             str(""),
			"site":            str(""),
			"template":        str(""),
			"tags":            tags(),
			"disabled":        boolean("a disabled device cannot connect"),
			"auth":            strEnum("how the device authenticates", auth...),
			"primaryKey":      str("base64 symmetric key (sas); shown to operators and admins only"),
			"secondaryKey":    str("base64 symmetric key (sas); shown to operators and admins only"),
			"thumbprint":      str("hex SHA-256 of the device certificate (x509_self)"),
			"enrollmentGroup": str("the enrollment group it registered through"),
			"createdAt":       dateTime(""),
			"updatedAt":       dateTime(""),
			"lastError":       str("the last protocol error the device caused"),
			"lastErrorAt":     dateTime(""),
			"errorCount":      integer("protocol errors so far", 0),
			"connected":       boolean("holds an MQTT connection now"),
		}),
		"DeviceList": object("a page of devices", []string{"items", "next"}, schema{
			"items": arrayOf(ref("Device")),
			"next":  str("pass as ?after= for the next page; empty on the last page"),
		}),
		"CreateDevice": input("a new device", []string{"id"}, schema{
			"id":         schema{"type": "string", "pattern": deviceIDPattern, "description": "device id, unique on the hub; the MQTT client id"},
			"site":       str("site id in the organization"),
			"template":   str("device template id"),
			"tags":       tags(),
			"auth":       strEnum("default sas, with generated keys", auth...),
			"thumbprint": schema{"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "hex SHA-256 of the device certificate, for x509_self"},
			"disabled":   boolean(""),
		}),
		"PatchDevice": input("device fields to change; absent fields stay", nil, schema{
			"site":     str(""),
			"template": str(""),
			"tags":     tags(),
			"disabled": boolean("true also drops the device's MQTT connection"),
		}),
		"ImportReport": object("the outcome of a CSV import, row by row", []string{"created", "failed", "rows"}, schema{
			"created": integer("devices created", 0),
			"failed":  integer("rows refused", 0),
			"rows": arrayOf(object("", []string{"line"}, schema{
				"line":  integer("line in the CSV file (the header is line 1)", 1),
				"id":    str("device id of the row"),
				"error": str("why the row was refused; absent when it was created"),
			})),
		}),
		"SASToken": object("a device SAS token", []string{"device", "token", "expiry"}, schema{
			"device": str(""),
			"token":  schema{"type": "string", "pattern": "^SharedAccessSignature ", "description": "MQTT password for the device"},
			"expiry": dateTime("when the token stops working"),
		}),
		"ConnectionString": object("a device connection string", []string{"device", "connectionString"}, schema{
			"device":           str(""),
			"connectionString": str("HostName=…;DeviceId=…;SharedAccessKey=… (or x509=true)"),
		}),
		"EnrollmentGroup": object("lets unknown devices register on first connect", []string{"id", "org", "disabled", "createdAt"}, schema{
			"id":           str(""),
			"org":          str(""),
			"site":         str("site of the devices it registers"),
			"template":     str(""),
			"tags":         tags(),
			"primaryKey":   str("group key (base64); shown to admins only"),
			"secondaryKey": str("group key (base64); shown to admins only"),
			"disabled":     boolean(""),
			"createdAt":    dateTime(""),
		}),
		"EnrollmentGroupList": object("", []string{"items"}, schema{"items": arrayOf(ref("EnrollmentGroup"))}),
		"CreateEnrollmentGroup": input("a new enrollment group", nil, schema{
			"id":           str("group id; generated when empty"),
			"site":         str(""),
			"template":     str(""),
			"tags":         tags(),
			"primaryKey":   str("base64 key; generated when empty"),
			"secondaryKey": str("base64 key; generated when empty"),
			"disabled":     boolean(""),
		}),
		"CACert": object("a certificate authority of the organization", []string{"id", "org", "name", "pem", "thumbprint", "autoRegister", "createdAt"}, schema{
			"id":           str(""),
			"org":          str(""),
			"name":         str(""),
			"pem":          str("the CA certificate, PEM"),
			"thumbprint":   str("hex SHA-256 of the DER certificate"),
			"autoRegister": boolean("register unknown devices whose certificate it issued"),
			"site":         str("site of auto-registered devices"),
			"createdAt":    dateTime(""),
		}),
		"CACertList": object("", []string{"items"}, schema{"items": arrayOf(ref("CACert"))}),
		"CreateCACert": input("a CA certificate to trust for device certificates", []string{"name", "pem"}, schema{
			"id":           str("id; generated when empty"),
			"name":         schema{"type": "string", "minLength": 1},
			"pem":          schema{"type": "string", "minLength": 1, "description": "PEM of a CA certificate"},
			"autoRegister": boolean(""),
			"site":         str(""),
		}),
		"Telemetry": object("a device's time series", []string{"device", "from", "to", "step", "agg", "series"}, schema{
			"device": str(""),
			"from":   integer("start, unix ms", 0),
			"to":     integer("end, unix ms", 0),
			"step":   integer("bucket width, ms", 1),
			"agg":    strEnum("aggregation inside each bucket", aggs...),
			"series": arrayOf(object("one field", []string{"field", "points"}, schema{
				"field": str(""),
				"points": arrayOf(object("", []string{"t", "v"}, schema{
					"t": schema{"type": "integer", "description": "unix ms"},
					"v": schema{"type": "number"},
				})),
			})),
		}),
		"Latest": object("a device's newest value of each field", []string{"device", "values"}, schema{
			"device": str(""),
			"values": arrayOf(object("", []string{"field", "t", "value"}, schema{
				"field": str(""),
				"t":     schema{"type": "integer", "description": "unix ms"},
				"value": schema{"type": []string{"number", "string", "boolean"}},
			})),
		}),
		"PrometheusResponse": object("the Prometheus HTTP API envelope", []string{"status"}, schema{
			"status":    strEnum("", "success", "error"),
			"data":      schema{"type": "object"},
			"errorType": str(""),
			"error":     str(""),
			"warnings":  arrayOf(schema{"type": "string"}),
		}),
	}
}

// errorExample is the documented example body of an error status.
func errorExample(status int) errorBody {
	e := map[int]errorDetail{
		http.StatusBadRequest:            {"invalid", `field "retentionDays" must be a whole number, not string`},
		http.StatusUnauthorized:          {"unauthorized", `this request needs an API token: send the header "Authorization: Bearer <token>"`},
		http.StatusForbidden:             {"forbidden", "this needs the operator role and your token has the viewer role; ask an admin of the organization for a token with the operator role"},
		http.StatusNotFound:              {"not_found", `device "press-7" not found`},
		http.StatusConflict:              {"conflict", `device "press-7" already exists`},
		http.StatusUnsupportedMediaType:  {"unsupported_media_type", "send the CSV file with Content-Type: text/csv"},
		http.StatusServiceUnavailable:    {"unavailable", "the time-series store is not running on this hub"},
		http.StatusPreconditionFailed:    {"precondition_failed", `If-Match "11" does not match the twin's etag "12"; read the twin again and reapply your change`},
		http.StatusRequestEntityTooLarge: {"too_large", "the desired properties would be 33012 bytes after this patch; the limit is 32768 bytes"},
		http.StatusGatewayTimeout:        {"timeout", `press-7 did not answer method "start" within 30s`},
		http.StatusInternalServerError:   {"internal", "internal error while handling the request; the hub log has the details (request id 3f2a9c1d0b7e4a55)"},
	}[status]
	return errorBody{Error: e}
}
