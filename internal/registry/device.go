package registry

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Paging limits of ListDevices.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// refChecker remembers which sites and templates exist during one request,
// so a CSV import does not look the same one up for every row (keys
// "site/<id>" and "template/<id>"). The database's foreign key still
// catches a site deleted meanwhile.
type refChecker map[string]error

func (s *Service) checkSite(ctx context.Context, org, site string, seen refChecker) error {
	if site == "" {
		return nil
	}
	if err := checkID("site id", site); err != nil {
		return err
	}
	if err, ok := seen["site/"+site]; ok {
		return err
	}
	_, err := s.store.GetSite(ctx, org, site)
	if errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("site %q does not exist in organization %q: create the site first or leave site empty: %w", site, org, ErrInvalid)
	}
	if seen != nil && (err == nil || errors.Is(err, ErrInvalid)) {
		seen["site/"+site] = err
	}
	return err
}

// TemplateExists reports whether org has a device template; the hub sets
// it with CheckTemplatesWith.
type TemplateExists func(ctx context.Context, org, template string) (bool, error)

// CheckTemplatesWith makes devices and enrollment groups that name a
// template that does not exist invalid. Without it any well-formed template
// name is accepted.
func (s *Service) CheckTemplatesWith(fn TemplateExists) {
	s.templateExists.Store(&fn)
}

// checkTemplateExists validates a template name and, when the service can
// see templates, that org has it.
func (s *Service) checkTemplateExists(ctx context.Context, org, tmpl string, seen refChecker) error {
	if err := checkTemplate(tmpl); err != nil || tmpl == "" {
		return err
	}
	fn := s.templateExists.Load()
	if fn == nil || *fn == nil {
		return nil
	}
	if err, ok := seen["template/"+tmpl]; ok {
		return err
	}
	ok, err := (*fn)(ctx, org, tmpl)
	if err != nil {
		return fmt.Errorf("check that template %q exists: %w", tmpl, err)
	}
	if !ok {
		err = fmt.Errorf("template %q does not exist in this organization: create it first (shopfloor template create, or POST /api/v1/templates), correct the name, or leave template empty: %w", tmpl, ErrInvalid)
	}
	if seen != nil {
		seen["template/"+tmpl] = err
	}
	return err
}

// prepareDevice validates d for creation in org and fills generated fields.
// It checks everything that needs no database first.
func (s *Service) prepareDevice(ctx context.Context, org string, d *Device, refs refChecker) error {
	if err := ValidateDeviceID(d.ID); err != nil {
		return err
	}
	if err := checkTemplate(d.Template); err != nil {
		return err
	}
	if err := checkTags(d.Tags); err != nil {
		return err
	}
	if d.Auth == "" {
		d.Auth = AuthSAS
	}
	if err := checkAuth(d.Auth); err != nil {
		return err
	}
	switch d.Auth {
	case AuthSAS:
		if d.Thumbprint != "" {
			return fmt.Errorf("device %q uses auth sas, which has no thumbprint: use auth x509_self for a certificate thumbprint: %w", d.ID, ErrInvalid)
		}
		for _, k := range []struct {
			name string
			v    *string
		}{{"primary key", &d.PrimaryKey}, {"secondary key", &d.SecondaryKey}} {
			if *k.v != "" {
				if err := checkKey(k.name, *k.v); err != nil {
					return err
				}
				continue
			}
			key, err := newKey(s.rand)
			if err != nil {
				return err
			}
			*k.v = key
		}
	case AuthX509Self, AuthX509CA:
		if d.PrimaryKey != "" || d.SecondaryKey != "" {
			return fmt.Errorf("device %q uses auth %s, which has no symmetric keys: remove the keys or use auth sas: %w", d.ID, d.Auth, ErrInvalid)
		}
		if d.Auth == AuthX509CA {
			if d.Thumbprint != "" {
				return fmt.Errorf("device %q uses auth x509_ca, which is checked against the organization's CA certificates: remove the thumbprint or use auth x509_self: %w", d.ID, ErrInvalid)
			}
			break
		}
		if d.Thumbprint == "" {
			return fmt.Errorf("device %q uses auth x509_self, which needs the thumbprint of its certificate (64 hex digits of SHA-256): %w", d.ID, ErrInvalid)
		}
		tp, err := normalizeThumbprint(d.Thumbprint)
		if err != nil {
			return err
		}
		d.Thumbprint = tp
	}
	if err := s.checkSite(ctx, org, d.Site, refs); err != nil {
		return err
	}
	if err := s.checkTemplateExists(ctx, org, d.Template, refs); err != nil {
		return err
	}
	t := now()
	d.Org = org
	d.Tags = copyTags(d.Tags)
	d.EnrollmentGroup = ""
	d.CreatedAt, d.UpdatedAt = t, t
	d.LastError, d.LastErrorAt, d.ErrorCount = "", nil, 0
	return nil
}

// CreateDevice registers a device in org. Org, timestamps and error fields
// of d are ignored; sas devices get generated keys where none are given.
func (s *Service) CreateDevice(ctx context.Context, org string, d Device) (Device, error) {
	if _, err := s.store.GetOrg(ctx, org); err != nil {
		return Device{}, err
	}
	if err := s.prepareDevice(ctx, org, &d, nil); err != nil {
		return Device{}, err
	}
	if err := s.store.CreateDevice(ctx, d); err != nil {
		return Device{}, err
	}
	s.log.Debug("device created", "org", org, "device", d.ID, "auth", d.Auth)
	return d, nil
}

// GetDevice returns a device of org; another org's device is ErrNotFound.
func (s *Service) GetDevice(ctx context.Context, org, id string) (Device, error) {
	return s.store.GetDevice(ctx, org, id)
}

// ListDevices returns one page of org's devices by id, and the cursor of
// the next page ("" on the last page).
func (s *Service) ListDevices(ctx context.Context, org string, f DeviceFilter) ([]Device, string, error) {
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, "", fmt.Errorf("limit %d is invalid: use 1 to %d: %w", f.Limit, MaxPageSize, ErrInvalid)
	}
	if f.Limit == 0 {
		f.Limit = DefaultPageSize
	}
	want := f.Limit
	f.Limit++ // one more tells whether another page follows
	items, err := s.store.ListDevices(ctx, org, f)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(items) > want {
		items = items[:want]
		next = items[want-1].ID
	}
	if items == nil {
		items = []Device{}
	}
	return items, next, nil
}

// UpdateDevice changes the non-nil fields of p.
func (s *Service) UpdateDevice(ctx context.Context, org, id string, p DevicePatch) (Device, error) {
	if p.Template != nil {
		if err := checkTemplate(*p.Template); err != nil {
			return Device{}, err
		}
	}
	if p.Tags != nil {
		if err := checkTags(*p.Tags); err != nil {
			return Device{}, err
		}
		t := copyTags(*p.Tags)
		p.Tags = &t
	}
	if p.Site != nil {
		if err := s.checkSite(ctx, org, *p.Site, nil); err != nil {
			return Device{}, err
		}
	}
	if p.Template != nil {
		if err := s.checkTemplateExists(ctx, org, *p.Template, nil); err != nil {
			return Device{}, err
		}
	}
	d, err := s.store.UpdateDevice(ctx, org, id, p, now())
	if err != nil {
		return Device{}, err
	}
	s.changed(org, id)
	return d, nil
}

// RegenerateKey replaces the primary or secondary key of a sas device.
func (s *Service) RegenerateKey(ctx context.Context, org, id, which string) (Device, error) {
	slot := KeySlot(which)
	if slot != KeyPrimary && slot != KeySecondary {
		return Device{}, fmt.Errorf("key %q is invalid: use primary or secondary: %w", which, ErrInvalid)
	}
	d, err := s.store.GetDevice(ctx, org, id)
	if err != nil {
		return Device{}, err
	}
	if d.Auth != AuthSAS {
		return Device{}, fmt.Errorf("device %q uses auth %s and has no keys to regenerate: %w", id, d.Auth, ErrInvalid)
	}
	key, err := newKey(s.rand)
	if err != nil {
		return Device{}, err
	}
	d, err = s.store.SetDeviceKey(ctx, org, id, slot, key, now())
	if err != nil {
		return Device{}, err
	}
	s.log.Info("device key regenerated", "org", org, "device", id, "key", which)
	s.changed(org, id)
	return d, nil
}

// DeleteDevice removes a device of org.
func (s *Service) DeleteDevice(ctx context.Context, org, id string) error {
	if err := s.store.DeleteDevice(ctx, org, id); err != nil {
		return err
	}
	s.log.Debug("device deleted", "org", org, "device", id)
	s.changed(org, id)
	return nil
}

// CountDevices returns how many devices org has.
func (s *Service) CountDevices(ctx context.Context, org string) (int, error) {
	return s.store.CountDevices(ctx, org)
}

// LookupDevice finds a device by id in any organization. The gateway calls
// it on every MQTT CONNECT.
func (s *Service) LookupDevice(ctx context.Context, id string) (Device, error) {
	return s.store.LookupDevice(ctx, id)
}

// RecordDeviceError remembers the last error of a device (shown to the plant
// engineer) and counts errors. A zero at means now.
func (s *Service) RecordDeviceError(ctx context.Context, id, msg string, at time.Time) error {
	return s.RecordDeviceErrors(ctx, id, msg, 1, at)
}

// RecordDeviceErrors records n errors at once, the last one being msg: the
// gateway batches a device's flood of bad messages this way.
func (s *Service) RecordDeviceErrors(ctx context.Context, id, msg string, n int, at time.Time) error {
	if n < 1 {
		return fmt.Errorf("error count %d must be at least 1: %w", n, ErrInvalid)
	}
	if at.IsZero() {
		at = now()
	}
	return s.store.RecordDeviceErrors(ctx, id, truncate(msg, MaxErrorLen), n, at.UTC().Truncate(time.Microsecond))
}
