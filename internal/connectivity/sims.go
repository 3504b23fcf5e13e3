package connectivity

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

const simCols = `iccid, org, imsi, msisdn, label, state, system_state, device, imei_lock, imei, static_ip, ki, opc, created_at, updated_at`

func scanSIM(sc interface{ Scan(...any) error }) (SIM, error) {
	var m SIM
	var st string
	var c, u int64
	err := sc.Scan(&m.ICCID, &m.Org, &m.IMSI, &m.MSISDN, &m.Label, &st, &m.SystemState, &m.Device, &m.IMEILock, &m.IMEI, &m.StaticIP, &m.Ki, &m.OPc, &c, &u)
	m.State = State(st)
	m.CreatedAt, m.UpdatedAt = time.UnixMicro(c).UTC(), time.UnixMicro(u).UTC()
	return m, err
}

func getSIM(ctx context.Context, q querier, org, iccid string) (SIM, error) {
	m, err := scanSIM(q.QueryRowContext(ctx, `SELECT `+simCols+` FROM conn_sims WHERE iccid = $1 AND org = $2`, iccid, org))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("SIM %q not found: %w", iccid, ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("read SIM %q: %w", iccid, err)
	}
	return m, nil
}

// CreateSIM adds a SIM in state INVENTORY.
func (s *Service) CreateSIM(ctx context.Context, org string, m SIM) (SIM, error) {
	m.Org, m.State, m.SystemState, m.Device, m.IMEI, m.IMEILock = org, StateInventory, "", "", "", false
	if err := validateSIM(m); err != nil {
		return m, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	m.CreatedAt, m.UpdatedAt = now, now
	res, err := s.db.ExecContext(ctx, `INSERT INTO conn_sims (`+simCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) ON CONFLICT DO NOTHING`,
		m.ICCID, org, m.IMSI, m.MSISDN, m.Label, string(m.State), "", "", false, "", m.StaticIP, m.Ki, m.OPc, now.UnixMicro())
	if err != nil {
		return m, fmt.Errorf("store SIM %q: %w", m.ICCID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return m, s.duplicateSIM(ctx, m.ICCID, m.IMSI)
	}
	return m, nil
}

// duplicateSIM names which unique field a refused insert collided on.
func (s *Service) duplicateSIM(ctx context.Context, iccid, imsi string) error {
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM conn_sims WHERE iccid = $1`, iccid).Scan(&one); err == nil {
		return &FieldError{Field: "iccid", Msg: fmt.Sprintf("a SIM with ICCID %s already exists", iccid), Kind: ErrConflict}
	}
	return &FieldError{Field: "imsi", Msg: fmt.Sprintf("another SIM already has IMSI %s", imsi), Kind: ErrConflict}
}

// GetSIM returns a SIM.
func (s *Service) GetSIM(ctx context.Context, org, iccid string) (SIM, error) {
	return getSIM(ctx, s.db, org, iccid)
}

// ListSIMs returns a page of SIMs ordered by ICCID and the cursor of the
// next page ("" on the last).
func (s *Service) ListSIMs(ctx context.Context, org string, f SIMFilter) ([]SIM, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	q := `SELECT ` + simCols + ` FROM conn_sims WHERE org = $1 AND iccid > $2`
	args := []any{org, f.After}
	if f.State != "" {
		args = append(args, string(f.State))
		q += fmt.Sprintf(" AND state = $%d", len(args))
	}
	if f.Device != "" {
		args = append(args, f.Device)
		q += fmt.Sprintf(" AND device = $%d", len(args))
	}
	if f.Label != "" {
		// A range, not LIKE: no escaping, and the same on both databases.
		args = append(args, f.Label, f.Label+"\U0010FFFF")
		q += fmt.Sprintf(" AND label >= $%d AND label < $%d", len(args)-1, len(args))
	}
	args = append(args, f.Limit+1)
	q += fmt.Sprintf(" ORDER BY iccid LIMIT $%d", len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list SIMs: %w", err)
	}
	defer rows.Close()
	out := []SIM{}
	for rows.Next() {
		m, err := scanSIM(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list SIMs: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list SIMs: %w", err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ICCID
	}
	return out, next, nil
}

// UpdateSIM changes a SIM's label, MSISDN, device binding, IMEI lock or
// static IP.
func (s *Service) UpdateSIM(ctx context.Context, org, actor, iccid string, p SIMPatch) (SIM, error) {
	if p.MSISDN != nil {
		if err := validateMSISDN(*p.MSISDN); err != nil {
			return SIM{}, err
		}
	}
	if p.Label != nil && len(*p.Label) > MaxLabelLen {
		return SIM{}, fieldErr("label", "is longer than %d characters", MaxLabelLen)
	}
	if p.StaticIP != nil {
		if err := validateStaticIP(*p.StaticIP); err != nil {
			return SIM{}, err
		}
	}
	if p.Device != nil && *p.Device != "" {
		if err := s.checkExternal(ctx, org, ref{"device", kindDevice, *p.Device}); err != nil {
			return SIM{}, err
		}
	}
	var m SIM
	var oldDevice string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if m, err = getSIM(ctx, tx, org, iccid); err != nil {
			return err
		}
		oldDevice = m.Device
		if p.Label != nil {
			m.Label = *p.Label
		}
		if p.MSISDN != nil {
			m.MSISDN = *p.MSISDN
		}
		if p.StaticIP != nil {
			m.StaticIP = *p.StaticIP
		}
		if p.IMEILock != nil {
			m.IMEILock = *p.IMEILock
		}
		keys := false
		for _, k := range []struct {
			field string
			in    *string
			dst   *string
		}{{"ki", p.Ki, &m.Ki}, {"opc", p.OPc, &m.OPc}} {
			if k.in == nil || strings.EqualFold(*k.in, *k.dst) {
				continue
			}
			// A key is replaced, never removed: the core would keep the old one.
			if *k.in == "" {
				return fieldErr(k.field, "must be 32 hex digits (128 bits); a SIM's key can be replaced but not removed")
			}
			if err := validateHex(k.field, *k.in); err != nil {
				return err
			}
			*k.dst, keys = *k.in, true
		}
		if p.ClearIMEI {
			m.IMEI = ""
			if m.SystemState == SystemUnauthorized {
				m.SystemState = ""
			}
		}
		if p.Device != nil && *p.Device != m.Device {
			if *p.Device != "" {
				var other string
				err := tx.QueryRowContext(ctx, `SELECT iccid FROM conn_sims WHERE device = $1`, *p.Device).Scan(&other)
				if err == nil {
					return &FieldError{Field: "device", Msg: fmt.Sprintf("device %q already holds SIM %s; unbind it there first", *p.Device, other), Kind: ErrConflict}
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("look up the device's SIM: %w", err)
				}
				if err := s.checkIMSIForDevice(ctx, tx, org, *p.Device, m.ICCID, m.IMSI); err != nil {
					return err
				}
			}
			m.Device = *p.Device
			// A new device is a new handset: the IMEI binds again.
			m.IMEI = ""
		}
		m.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
		if _, err := tx.ExecContext(ctx, `UPDATE conn_sims SET label = $1, msisdn = $2, static_ip = $3, imei_lock = $4, imei = $5, device = $6, system_state = $7, updated_at = $8, ki = $9, opc = $10 WHERE iccid = $11`,
			m.Label, m.MSISDN, m.StaticIP, m.IMEILock, m.IMEI, m.Device, m.SystemState, m.UpdatedAt.UnixMicro(), m.Ki, m.OPc, iccid); err != nil {
			return fmt.Errorf("update SIM %q: %w", iccid, err)
		}
		if keys && oldDevice == m.Device {
			if err := s.markDirty(ctx, tx, org, kindSubscriber, iccid); err != nil {
				return err
			}
		}
		if oldDevice != m.Device {
			for _, d := range []string{oldDevice, m.Device} {
				if d == "" {
					continue
				}
				if err := s.markGroupOfDevice(ctx, tx, org, d); err != nil {
					return err
				}
			}
			return s.markDirty(ctx, tx, org, kindSubscriber, iccid)
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	s.enf.putSIM(m)
	if oldDevice != "" && oldDevice != m.Device {
		s.enf.removeDevice(oldDevice)
		s.disconnect(oldDevice, "its SIM was moved to another device")
	}
	s.wakePusher()
	return m, nil
}

func (s *Service) markGroupOfDevice(ctx context.Context, q querier, org, device string) error {
	g, err := groupOfDevice(ctx, q, org, device)
	if err != nil || g == "" {
		return err
	}
	return s.markDirty(ctx, q, org, kindGroup, g)
}

func (s *Service) disconnect(device, reason string) {
	if device != "" && s.opt.Disconnect != nil {
		s.opt.Disconnect(device, reason)
	}
}

// SetState changes a SIM's state now, auditing who did it.
func (s *Service) SetState(ctx context.Context, org, actor, iccid string, to State) (SIM, error) {
	return s.setState(ctx, org, actor, iccid, to, "")
}

func (s *Service) setState(ctx context.Context, org, actor, iccid string, to State, reason string) (SIM, error) {
	if !validState(to) {
		return SIM{}, fieldErr("state", "%q is not a state; use one of %s", to, statesList())
	}
	var m SIM
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if m, err = getSIM(ctx, tx, org, iccid); err != nil {
			return err
		}
		if !CanTransition(m.State, to) {
			return &FieldError{Field: "state", Kind: ErrTransition,
				Msg: fmt.Sprintf("SIM %s cannot go from %s to %s; from %s it can go to %s", iccid, m.State, to, m.State, nextStates(m.State))}
		}
		// With a mobile core, a SIM it cannot authenticate is refused now
		// rather than failing later in the push.
		if s.opt.Core != nil && (to == StateActivated || to == StateTestReady) && (m.Ki == "" || m.OPc == "") {
			return fieldErr("state", "SIM %s has no Ki or OPc, and the mobile core cannot authenticate it without both: set them first (PATCH ki and opc, or shopfloor sim keys)", iccid)
		}
		from := m.State
		m.State = to
		if to == StateActivated {
			// Activating again is how a user clears what the hub imposed.
			m.SystemState = ""
		}
		m.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
		if _, err := tx.ExecContext(ctx, `UPDATE conn_sims SET state = $1, system_state = $2, updated_at = $3 WHERE iccid = $4`,
			string(to), m.SystemState, m.UpdatedAt.UnixMicro(), iccid); err != nil {
			return fmt.Errorf("update SIM %q: %w", iccid, err)
		}
		if err := s.audit(ctx, tx, org, iccid, actor, string(from), string(to), reason); err != nil {
			return err
		}
		if m.Device != "" {
			if err := s.markGroupOfDevice(ctx, tx, org, m.Device); err != nil {
				return err
			}
		}
		return s.markDirty(ctx, tx, org, kindSubscriber, iccid)
	})
	if err != nil {
		return m, err
	}
	s.enf.putSIM(m)
	if to != StateActivated {
		s.disconnect(m.Device, fmt.Sprintf("its SIM %s is %s", iccid, to))
	}
	s.wakePusher()
	return m, nil
}

func validState(st State) bool {
	for _, v := range States {
		if v == st {
			return true
		}
	}
	return false
}

func statesList() string {
	var b []string
	for _, v := range States {
		b = append(b, string(v))
	}
	return strings.Join(b, ", ")
}

func nextStates(from State) string {
	var b []string
	for _, v := range transitions[from] {
		b = append(b, string(v))
	}
	if len(b) == 0 {
		return "nothing (it is final)"
	}
	return strings.Join(b, " or ")
}

func (s *Service) audit(ctx context.Context, q querier, org, iccid, actor, from, to, reason string) error {
	now := s.now()
	if _, err := q.ExecContext(ctx, `INSERT INTO conn_audit (id, org, iccid, actor, at, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		s.newID(now), org, iccid, actor, now.UnixMicro(), from, to, reason); err != nil {
		return fmt.Errorf("audit the change of SIM %q: %w", iccid, err)
	}
	return nil
}

// ListAudit returns audit entries, newest last, a page at a time.
func (s *Service) ListAudit(ctx context.Context, org string, f AuditFilter) ([]AuditEntry, string, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	q := `SELECT id, iccid, actor, at, from_state, to_state, reason FROM conn_audit WHERE org = $1 AND id > $2`
	args := []any{org, f.After}
	if f.ICCID != "" {
		args = append(args, f.ICCID)
		q += " AND iccid = $3"
	}
	args = append(args, f.Limit+1)
	q += fmt.Sprintf(" ORDER BY id LIMIT $%d", len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("read the audit: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &e.ICCID, &e.Actor, &at, &e.From, &e.To, &e.Reason); err != nil {
			return nil, "", err
		}
		e.At = time.UnixMicro(at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// ScheduleState schedules a state change for a future time. The transition
// is checked when it runs; if it is illegal then, the audit records why
// nothing happened.
func (s *Service) ScheduleState(ctx context.Context, org, actor, iccid string, to State, at time.Time) (Scheduled, error) {
	if !validState(to) {
		return Scheduled{}, fieldErr("state", "%q is not a state; use one of %s", to, statesList())
	}
	if !at.After(s.now()) {
		return Scheduled{}, fieldErr("at", "%s is not in the future; leave it out to change the state now", at.Format(time.RFC3339))
	}
	if _, err := getSIM(ctx, s.db, org, iccid); err != nil {
		return Scheduled{}, err
	}
	sc := Scheduled{ID: s.newID(s.now()), ICCID: iccid, To: to, At: at.UTC().Truncate(time.Microsecond), Actor: actor}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO conn_schedule (id, org, iccid, to_state, at, actor) VALUES ($1, $2, $3, $4, $5, $6)`,
		sc.ID, org, iccid, string(to), sc.At.UnixMicro(), actor); err != nil {
		return sc, fmt.Errorf("schedule the change of SIM %q: %w", iccid, err)
	}
	return sc, nil
}

// ListScheduled lists pending scheduled changes of a SIM ("" for all).
func (s *Service) ListScheduled(ctx context.Context, org, iccid string) ([]Scheduled, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, iccid, to_state, at, actor FROM conn_schedule WHERE org = $1 AND ($2 = '' OR iccid = $2) ORDER BY at, id`, org, iccid)
	if err != nil {
		return nil, fmt.Errorf("list scheduled changes: %w", err)
	}
	defer rows.Close()
	out := []Scheduled{}
	for rows.Next() {
		var sc Scheduled
		var to string
		var at int64
		if err := rows.Scan(&sc.ID, &sc.ICCID, &to, &at, &sc.Actor); err != nil {
			return nil, err
		}
		sc.To, sc.At = State(to), time.UnixMicro(at).UTC()
		out = append(out, sc)
	}
	return out, rows.Err()
}

// RunDue applies the scheduled changes whose time has come and returns how
// many it applied. Run calls it every SchedulerEvery.
func (s *Service) RunDue(ctx context.Context) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, org, iccid, to_state, actor FROM conn_schedule WHERE at <= $1 ORDER BY at, id LIMIT 1000`, s.now().UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("read scheduled changes: %w", err)
	}
	type due struct{ id, org, iccid, to, actor string }
	var list []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.org, &d.iccid, &d.to, &d.actor); err != nil {
			rows.Close()
			return 0, err
		}
		list = append(list, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range list {
		_, err := s.setState(ctx, d.org, d.actor, d.iccid, State(d.to), "scheduled "+d.id)
		if err != nil && !errors.Is(err, ErrTransition) && !errors.Is(err, ErrNotFound) {
			return n, err
		}
		if err != nil {
			// Record the refusal so the schedule's author can see it.
			if aerr := s.audit(ctx, s.db, d.org, d.iccid, d.actor, "", "", "scheduled "+d.id+" not applied: "+err.Error()); aerr != nil {
				return n, aerr
			}
		} else {
			n++
		}
		if _, err := s.db.ExecContext(ctx, `DELETE FROM conn_schedule WHERE id = $1`, d.id); err != nil {
			return n, fmt.Errorf("remove a done scheduled change: %w", err)
		}
	}
	return n, nil
}

func (s *Service) runScheduler(ctx context.Context) {
	t := time.NewTicker(s.opt.SchedulerEvery)
	defer t.Stop()
	for {
		if _, err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("apply scheduled SIM changes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SIMRow is one SIM of a bulk import.
type SIMRow struct {
	ICCID, IMSI, MSISDN, Label, Ki, OPc string
	// Invalid, when set, is why the row could not be read (a CSV syntax
	// error); the row fails with it.
	Invalid string
}

// importBatch is how many rows go in one INSERT: 9 parameters a row stays
// below SQLite's 32766 and PostgreSQL's 65535.
const importBatch = 2000

// ImportSIMs creates SIMs in state INVENTORY with multi-row inserts, many
// per transaction. A bad or duplicate row fails alone. progress, when set,
// is called after each committed transaction.
func (s *Service) ImportSIMs(ctx context.Context, org string, rows []SIMRow, progress func(done, failed int)) (created int, errs []RowError, err error) {
	failed := 0
	addErr := func(e RowError) {
		failed++
		if len(errs) < MaxJobErrors {
			errs = append(errs, e)
		}
	}
	now := s.now().UnixMicro()
	seenICCID := make(map[string]struct{}, len(rows))
	seenIMSI := make(map[string]struct{}, len(rows))
	type good struct {
		row int
		r   SIMRow
	}
	batch := make([]good, 0, importBatch)
	var tx *sql.Tx
	inTx := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if tx == nil {
			if tx, err = s.db.BeginTx(ctx, nil); err != nil {
				return fmt.Errorf("begin the import transaction: %w", err)
			}
		}
		var b strings.Builder
		b.WriteString(`INSERT INTO conn_sims (` + simCols + `) VALUES `)
		args := make([]any, 0, 9*len(batch))
		for i, g := range batch {
			if i > 0 {
				b.WriteByte(',')
			}
			if s.d.Anonymous {
				b.WriteString("(?,?,?,?,?,'INVENTORY','','',FALSE,'','',?,?,?,?)")
			} else {
				n := 1 + 9*i
				fmt.Fprintf(&b, "($%d,$%d,$%d,$%d,$%d,'INVENTORY','','',FALSE,'','',$%d,$%d,$%d,$%d)", n, n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8)
			}
			args = append(args, g.r.ICCID, org, g.r.IMSI, g.r.MSISDN, g.r.Label, g.r.Ki, g.r.OPc, now, now)
		}
		b.WriteString(" ON CONFLICT DO NOTHING RETURNING iccid")
		rs, err := tx.QueryContext(ctx, b.String(), args...)
		if err != nil {
			return fmt.Errorf("insert SIMs: %w", err)
		}
		inserted := make(map[string]struct{}, len(batch))
		for rs.Next() {
			var id string
			if err := rs.Scan(&id); err != nil {
				rs.Close()
				return err
			}
			inserted[id] = struct{}{}
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return fmt.Errorf("insert SIMs: %w", err)
		}
		for _, g := range batch {
			if _, ok := inserted[g.r.ICCID]; ok {
				created++
			} else {
				addErr(RowError{Row: g.row, ICCID: g.r.ICCID, Error: "a SIM with this ICCID or IMSI already exists"})
			}
		}
		inTx += len(batch)
		batch = batch[:0]
		if inTx >= 50*importBatch {
			if err := tx.Commit(); err != nil {
				return fmt.Errorf("commit the import: %w", err)
			}
			tx, inTx = nil, 0
			// Only after the commit: progress may write, and SQLite has
			// one writer.
			if progress != nil {
				progress(created, failed)
			}
		}
		return nil
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	for i, r := range rows {
		if r.Invalid != "" {
			addErr(RowError{Row: i + 1, Error: r.Invalid})
			continue
		}
		m := SIM{ICCID: r.ICCID, IMSI: r.IMSI, MSISDN: r.MSISDN, Label: r.Label, Ki: r.Ki, OPc: r.OPc}
		if verr := validateSIM(m); verr != nil {
			addErr(RowError{Row: i + 1, ICCID: r.ICCID, Error: verr.Error()})
			continue
		}
		if _, dup := seenICCID[r.ICCID]; dup {
			addErr(RowError{Row: i + 1, ICCID: r.ICCID, Error: "the ICCID appears twice in this import"})
			continue
		}
		if _, dup := seenIMSI[r.IMSI]; dup {
			addErr(RowError{Row: i + 1, ICCID: r.ICCID, Error: "the IMSI appears twice in this import"})
			continue
		}
		seenICCID[r.ICCID], seenIMSI[r.IMSI] = struct{}{}, struct{}{}
		batch = append(batch, good{i + 1, r})
		if len(batch) == importBatch {
			if err := flush(); err != nil {
				return created, errs, err
			}
		}
	}
	if err := flush(); err != nil {
		return created, errs, err
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return created, errs, fmt.Errorf("commit the import: %w", err)
		}
		tx = nil
	}
	if progress != nil {
		progress(created, failed)
	}
	return created, errs, nil
}

// StartImport runs ImportSIMs as an asynchronous job.
func (s *Service) StartImport(ctx context.Context, org string, rows []SIMRow) (Job, error) {
	if len(rows) == 0 {
		return Job{}, fieldErr("sims", "is empty: send at least one SIM")
	}
	j, err := s.newJob(ctx, org, "import", len(rows))
	if err != nil {
		return j, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		created, errs, err := s.ImportSIMs(s.ctx, org, rows, func(done, failed int) {
			s.jobProgress(j.ID, done, failed, nil, false)
		})
		if err != nil {
			errs = append(errs, RowError{Error: "the import stopped: " + err.Error()})
			s.log.Error("SIM import job failed", "job", j.ID, "err", err)
		}
		s.jobProgress(j.ID, created, len(rows)-created, errs, true)
	}()
	return j, nil
}

// StartBulkState changes the state of many SIMs as an asynchronous job;
// each SIM succeeds or fails alone and every change is audited.
func (s *Service) StartBulkState(ctx context.Context, org, actor string, iccids []string, to State) (Job, error) {
	if len(iccids) == 0 {
		return Job{}, fieldErr("iccids", "is empty: list the SIMs to change")
	}
	if !validState(to) {
		return Job{}, fieldErr("state", "%q is not a state; use one of %s", to, statesList())
	}
	j, err := s.newJob(ctx, org, "state", len(iccids))
	if err != nil {
		return j, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		done, failed := 0, 0
		var errs []RowError
		for i, id := range iccids {
			if _, err := s.setState(s.ctx, org, actor, id, to, "job "+j.ID); err != nil {
				failed++
				if len(errs) < MaxJobErrors {
					errs = append(errs, RowError{Row: i + 1, ICCID: id, Error: err.Error()})
				}
				if s.ctx.Err() != nil {
					break
				}
			} else {
				done++
			}
			if (i+1)%500 == 0 {
				s.jobProgress(j.ID, done, failed, nil, false)
			}
		}
		s.jobProgress(j.ID, done, len(iccids)-done, errs, true)
	}()
	return j, nil
}

func (s *Service) newJob(ctx context.Context, org, kind string, total int) (Job, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	j := Job{ID: s.newID(now), Org: org, Kind: kind, Status: JobRunning, Total: total, Errors: []RowError{}, CreatedAt: now}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO conn_jobs (id, org, kind, status, total, done, failed, errors, created_at) VALUES ($1, $2, $3, $4, $5, 0, 0, '[]', $6)`,
		j.ID, org, kind, j.Status, total, now.UnixMicro()); err != nil {
		return j, fmt.Errorf("create the job: %w", err)
	}
	return j, nil
}

func (s *Service) jobProgress(id string, done, failed int, errs []RowError, end bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if end {
		if errs == nil {
			errs = []RowError{}
		}
		b, _ := json.Marshal(errs)
		_, err = s.db.ExecContext(ctx, `UPDATE conn_jobs SET status = $1, done = $2, failed = $3, errors = $4, ended_at = $5 WHERE id = $6`,
			JobDone, done, failed, string(b), s.now().UnixMicro(), id)
	} else {
		_, err = s.db.ExecContext(ctx, `UPDATE conn_jobs SET done = $1, failed = $2 WHERE id = $3`, done, failed, id)
	}
	if err != nil {
		s.log.Error("record job progress", "job", id, "err", err)
	}
}

// GetJob returns a job of the organization.
func (s *Service) GetJob(ctx context.Context, org, id string) (Job, error) {
	var j Job
	var errs string
	var created int64
	var ended sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT id, org, kind, status, total, done, failed, errors, created_at, ended_at FROM conn_jobs WHERE id = $1 AND org = $2`, id, org).
		Scan(&j.ID, &j.Org, &j.Kind, &j.Status, &j.Total, &j.Done, &j.Failed, &errs, &created, &ended)
	if errors.Is(err, sql.ErrNoRows) {
		return j, fmt.Errorf("job %q not found: %w", id, ErrNotFound)
	}
	if err != nil {
		return j, fmt.Errorf("read job %q: %w", id, err)
	}
	j.CreatedAt = time.UnixMicro(created).UTC()
	if ended.Valid {
		t := time.UnixMicro(ended.Int64).UTC()
		j.EndedAt = &t
	}
	if err := json.Unmarshal([]byte(errs), &j.Errors); err != nil {
		return j, fmt.Errorf("decode job %q: %w", id, err)
	}
	return j, nil
}
