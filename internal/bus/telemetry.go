package bus

// Telemetry is one device message after parsing, as it travels on the bus.
type Telemetry struct {
	Org      string             `json:"o"`
	Device   string             `json:"d"`
	Site     string             `json:"s,omitempty"`
	Template string             `json:"tp,omitempty"`
	TS       int64              `json:"t"`            // unix ms: device timestamp, or receive time
	Received int64              `json:"r"`            // unix ms when the gateway received it
	Num      map[string]float64 `json:"n,omitempty"`  // flattened numeric and boolean (1/0) fields
	Str      map[string]string  `json:"st,omitempty"` // string fields
	Props    map[string]string  `json:"p,omitempty"`  // MQTT property bag / user properties
}
