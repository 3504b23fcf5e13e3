package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// CreateEnrollmentGroup creates an enrollment group in org. Ids are unique
// hub-wide (a random "eg-…" when empty); keys are generated when empty.
func (s *Service) CreateEnrollmentGroup(ctx context.Context, org string, g EnrollmentGroup) (EnrollmentGroup, error) {
	if g.ID != "" {
		if err := checkID("enrollment group id", g.ID); err != nil {
			return EnrollmentGroup{}, err
		}
	}
	if err := s.checkTemplateExists(ctx, org, g.Template, nil); err != nil {
		return EnrollmentGroup{}, err
	}
	if err := checkTags(g.Tags); err != nil {
		return EnrollmentGroup{}, err
	}
	for _, k := range []struct {
		name string
		v    *string
	}{{"primary key", &g.PrimaryKey}, {"secondary key", &g.SecondaryKey}} {
		if *k.v != "" {
			if err := checkKey("enrollment group "+k.name, *k.v); err != nil {
				return EnrollmentGroup{}, err
			}
			continue
		}
		key, err := newKey(s.rand)
		if err != nil {
			return EnrollmentGroup{}, err
		}
		*k.v = key
	}
	if _, err := s.store.GetOrg(ctx, org); err != nil {
		return EnrollmentGroup{}, err
	}
	if err := s.checkSite(ctx, org, g.Site, nil); err != nil {
		return EnrollmentGroup{}, err
	}
	if g.ID == "" {
		id, err := newID(s.rand, "eg-")
		if err != nil {
			return EnrollmentGroup{}, err
		}
		g.ID = id
	}
	g.Org = org
	g.Tags = copyTags(g.Tags)
	g.CreatedAt = now()
	if err := s.store.CreateEnrollmentGroup(ctx, g); err != nil {
		return EnrollmentGroup{}, err
	}
	s.log.Info("enrollment group created", "org", org, "group", g.ID, "disabled", g.Disabled)
	return g, nil
}

// GetEnrollmentGroup returns an enrollment group of org, with its keys.
func (s *Service) GetEnrollmentGroup(ctx context.Context, org, id string) (EnrollmentGroup, error) {
	return s.store.GetEnrollmentGroup(ctx, org, id)
}

// ListEnrollmentGroups returns org's enrollment groups by id.
func (s *Service) ListEnrollmentGroups(ctx context.Context, org string) ([]EnrollmentGroup, error) {
	return s.store.ListEnrollmentGroups(ctx, org)
}

// DeleteEnrollmentGroup deletes a group of org. Devices it registered stay.
func (s *Service) DeleteEnrollmentGroup(ctx context.Context, org, id string) error {
	if err := s.store.DeleteEnrollmentGroup(ctx, org, id); err != nil {
		return err
	}
	s.log.Info("enrollment group deleted", "org", org, "group", id)
	return nil
}

// ListAllEnrollmentGroups returns the enabled groups of all organizations,
// with keys, for the gateway to check the key of an unknown device.
func (s *Service) ListAllEnrollmentGroups(ctx context.Context) ([]EnrollmentGroup, error) {
	return s.store.ListEnabledEnrollmentGroups(ctx)
}

// RegisterFromGroup registers deviceID zero-touch through an enabled group:
// its keys are derived from the group's keys (see DeriveKey) and its site,
// template and tags come from the group. When the device already registered
// through the same group it is returned unchanged, so two gateway nodes
// racing on the first connect both succeed.
func (s *Service) RegisterFromGroup(ctx context.Context, groupID, deviceID string) (Device, error) {
	if err := ValidateDeviceID(deviceID); err != nil {
		return Device{}, err
	}
	g, err := s.store.LookupEnrollmentGroup(ctx, groupID)
	if err != nil {
		return Device{}, err
	}
	if g.Disabled {
		return Device{}, fmt.Errorf("enrollment group %q is disabled: enable it to let device %q register: %w", g.ID, deviceID, ErrForbidden)
	}
	pk, err := DeriveKey(g.PrimaryKey, deviceID)
	if err != nil {
		return Device{}, err
	}
	sk, err := DeriveKey(g.SecondaryKey, deviceID)
	if err != nil {
		return Device{}, err
	}
	t := now()
	d := Device{
		ID: deviceID, Org: g.Org, Site: g.Site, Template: g.Template, Tags: copyTags(g.Tags),
		Auth: AuthSAS, PrimaryKey: pk, SecondaryKey: sk, EnrollmentGroup: g.ID,
		CreatedAt: t, UpdatedAt: t,
	}
	if err := s.store.CreateDevice(ctx, d); err != nil {
		if errors.Is(err, ErrConflict) {
			if old, lerr := s.store.LookupDevice(ctx, deviceID); lerr == nil && old.Org == g.Org && old.EnrollmentGroup == g.ID {
				return old, nil
			}
			return Device{}, fmt.Errorf("device id %q is already registered, so it cannot register through enrollment group %q: %w", deviceID, g.ID, ErrConflict)
		}
		return Device{}, err
	}
	s.log.Info("device registered from enrollment group", "org", g.Org, "group", g.ID, "device", deviceID)
	return d, nil
}

// parseCA parses exactly one PEM certificate that is a valid CA.
func parseCA(p string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(p))
	if block == nil {
		return nil, fmt.Errorf("the CA certificate is not PEM: give the text that starts with -----BEGIN CERTIFICATE-----: %w", ErrInvalid)
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("the PEM block is a %q, not a CERTIFICATE: give the CA's certificate, never its private key: %w", block.Type, ErrInvalid)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("the PEM holds more than one block: register one CA certificate at a time: %w", ErrInvalid)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate cannot be parsed (%v): export it again as PEM: %w", err, ErrInvalid)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA certificate (basic constraints CA:TRUE is missing): register the issuing CA, or give devices auth x509_self: %w", cert.Subject.String(), ErrInvalid)
	}
	if t := now(); t.After(cert.NotAfter) {
		return nil, fmt.Errorf("CA certificate %q expired on %s: register its renewed certificate: %w", cert.Subject.String(), cert.NotAfter.UTC().Format("2006-01-02"), ErrInvalid)
	}
	return cert, nil
}

// CreateCACert registers a CA certificate for org. The PEM must hold one CA
// certificate; Thumbprint is set from it (hex SHA-256 of the DER). Ids are
// unique hub-wide (a random "ca-…" when empty), and so is each certificate,
// so a client certificate always maps to one organization.
func (s *Service) CreateCACert(ctx context.Context, org string, c CACert) (CACert, error) {
	if c.ID != "" {
		if err := checkID("CA certificate id", c.ID); err != nil {
			return CACert{}, err
		}
	}
	cert, err := parseCA(c.PEM)
	if err != nil {
		return CACert{}, err
	}
	if c.Name == "" {
		c.Name = cert.Subject.CommonName
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	if c.Name == "" {
		c.Name = "CA"
	}
	if err := checkName("CA certificate name", c.Name); err != nil {
		return CACert{}, err
	}
	if _, err := s.store.GetOrg(ctx, org); err != nil {
		return CACert{}, err
	}
	if err := s.checkSite(ctx, org, c.Site, nil); err != nil {
		return CACert{}, err
	}
	if c.ID == "" {
		if c.ID, err = newID(s.rand, "ca-"); err != nil {
			return CACert{}, err
		}
	}
	sum := sha256.Sum256(cert.Raw)
	c.Org = org
	c.Thumbprint = hex.EncodeToString(sum[:])
	c.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	c.CreatedAt = now()
	if err := s.store.CreateCACert(ctx, c); err != nil {
		return CACert{}, err
	}
	s.log.Info("CA certificate registered", "org", org, "ca", c.ID, "subject", cert.Subject.String(), "autoRegister", c.AutoRegister)
	return c, nil
}

// ListCACerts returns org's CA certificates by id.
func (s *Service) ListCACerts(ctx context.Context, org string) ([]CACert, error) {
	return s.store.ListCACerts(ctx, org)
}

// DeleteCACert deletes a CA certificate of org. Its devices stay registered
// but cannot authenticate until the CA is registered again.
func (s *Service) DeleteCACert(ctx context.Context, org, id string) error {
	if err := s.store.DeleteCACert(ctx, org, id); err != nil {
		return err
	}
	s.log.Info("CA certificate deleted", "org", org, "ca", id)
	return nil
}

// ListAllCACerts returns the CA certificates of all organizations, for the
// gateway's TLS client-certificate pool.
func (s *Service) ListAllCACerts(ctx context.Context) ([]CACert, error) {
	return s.store.ListAllCACerts(ctx)
}

// RegisterFromCA registers deviceID zero-touch with auth x509_ca when the CA
// allows it (AutoRegister); the gateway has verified the client certificate
// chain. A device already registered with x509_ca in the CA's organization
// is returned unchanged.
func (s *Service) RegisterFromCA(ctx context.Context, caID, deviceID string) (Device, error) {
	if err := ValidateDeviceID(deviceID); err != nil {
		return Device{}, err
	}
	ca, err := s.store.LookupCACert(ctx, caID)
	if err != nil {
		return Device{}, err
	}
	if !ca.AutoRegister {
		return Device{}, fmt.Errorf("CA certificate %q does not allow automatic registration: register device %q first, or turn on autoRegister for the CA: %w", ca.ID, deviceID, ErrForbidden)
	}
	t := now()
	d := Device{ID: deviceID, Org: ca.Org, Site: ca.Site, Auth: AuthX509CA, CreatedAt: t, UpdatedAt: t}
	if err := s.store.CreateDevice(ctx, d); err != nil {
		if errors.Is(err, ErrConflict) {
			if old, lerr := s.store.LookupDevice(ctx, deviceID); lerr == nil && old.Org == ca.Org && old.Auth == AuthX509CA {
				return old, nil
			}
			return Device{}, fmt.Errorf("device id %q is already registered, so it cannot register through CA certificate %q: %w", deviceID, ca.ID, ErrConflict)
		}
		return Device{}, err
	}
	s.log.Info("device registered from CA certificate", "org", ca.Org, "ca", ca.ID, "device", deviceID)
	return d, nil
}
