package twin

import (
	"context"
	"time"
)

// Notifier tells the process holding a device's connection about a change
// meant for it; the command router satisfies it. A lost notification is
// repaired by the device itself: it reads its twin and its queue when it
// connects.
type Notifier interface {
	NotifyDesired(org, device string, version int64, patch []byte) error
	NotifyC2D(org, device string) error
}

// DesiredCheck refuses a desired patch the device's template forbids;
// template.Enforcer satisfies it.
type DesiredCheck interface {
	CheckDesiredOf(ctx context.Context, org, device string, patch []byte) error
}

// Change is the one way the service side changes a twin (the REST API, the
// console, jobs and rule actions): the desired part is checked against the
// device's template, the patch stored, and the device told.
func (s *Service) Change(ctx context.Context, org, device string, p Patch, ifMatch string) (Twin, error) {
	if s.cfg.Check != nil && p.Desired != nil {
		if err := s.cfg.Check.CheckDesiredOf(ctx, org, device, p.Desired); err != nil {
			return Twin{}, err
		}
	}
	res, err := s.Patch(ctx, org, device, p, ifMatch)
	if err != nil {
		return Twin{}, err
	}
	if res.DesiredPatch != nil && s.cfg.Notifier != nil {
		_ = s.cfg.Notifier.NotifyDesired(org, device, res.Twin.DesiredVersion, res.DesiredPatch)
	}
	return res.Twin, nil
}

// Queue stores a cloud-to-device message and tells the device's process;
// undelivered, it waits for the device's next connection.
func (s *Service) Queue(ctx context.Context, org, device string, body []byte, props map[string]string, ttl time.Duration) (Message, error) {
	m, err := s.Send(ctx, org, device, body, props, ttl)
	if err != nil {
		return Message{}, err
	}
	if s.cfg.Notifier != nil {
		_ = s.cfg.Notifier.NotifyC2D(org, device)
	}
	return m, nil
}

// View is a twin as the service side reads it, in IoT Hub's shape: desired
// and reported each carry their $version.
type View struct {
	DeviceID   string         `json:"deviceId"`
	ETag       string         `json:"etag"`
	Version    int64          `json:"version"`
	Tags       map[string]any `json:"tags"`
	Properties ViewProperties `json:"properties"`
}

// ViewProperties are the desired and reported properties of a View.
type ViewProperties struct {
	Desired  map[string]any `json:"desired"`
	Reported map[string]any `json:"reported"`
}

// View returns the twin in the service side's shape.
func (t Twin) View() View {
	desired := map[string]any{"$version": t.DesiredVersion}
	for k, v := range t.Desired {
		desired[k] = v
	}
	reported := map[string]any{"$version": t.ReportedVersion}
	for k, v := range t.Reported {
		reported[k] = v
	}
	tags := t.Tags
	if tags == nil {
		tags = map[string]any{}
	}
	return View{DeviceID: t.DeviceID, ETag: t.ETag(), Version: t.Version, Tags: tags,
		Properties: ViewProperties{Desired: desired, Reported: reported}}
}
