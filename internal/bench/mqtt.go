package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// MQTT 3.1.1 control packet types (high nibble of the first byte).
const (
	pktConnect   = 1
	pktConnack   = 2
	pktPublish   = 3
	pktPuback    = 4
	pktSubscribe = 8
	pktSuback    = 9
	pktPingreq   = 12
	pktPingresp  = 13
)

// ErrRefused is returned when the broker refuses a connection.
var ErrRefused = errors.New("broker refused the connection")

// conn is one MQTT 3.1.1 connection. Writes are serialized by mu; reads
// belong to a single reader goroutine.
type conn struct {
	nc  net.Conn
	br  *bufio.Reader
	mu  sync.Mutex
	bw  *bufio.Writer
	hdr [5]byte
	buf []byte // read buffer, reused
}

// dial connects and completes the MQTT handshake, with buffers sized for
// publishing at full speed.
func dial(ctx context.Context, addr string, tc *tls.Config, clientID, user, pass string, keepAlive time.Duration) (*conn, error) {
	return dialSized(ctx, addr, tc, clientID, user, pass, keepAlive, 32<<10, 16<<10)
}

// dialSized is dial with the read and write buffer sizes given: idle
// connections use tiny ones, so that ten thousand of them cost the
// generator little memory next to the hub it measures.
func dialSized(ctx context.Context, addr string, tc *tls.Config, clientID, user, pass string, keepAlive time.Duration, rbuf, wbuf int) (*conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	var nc net.Conn
	var err error
	if tc != nil {
		nc, err = (&tls.Dialer{NetDialer: &d, Config: tc}).DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, rbuf), bw: bufio.NewWriterSize(nc, wbuf)}
	flags := byte(0x02) // clean session
	body := appendString(nil, "MQTT")
	body = append(body, 4) // protocol level 3.1.1
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint16(body, uint16(keepAlive/time.Second))
	body = appendString(body, clientID)
	if user != "" {
		body = appendString(body, user)
	}
	if pass != "" {
		body = appendString(body, pass)
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	c.writePacket(pktConnect<<4, body)
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("send CONNECT to %s: %w", addr, err)
	}
	typ, _, b, err := c.read()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("wait for CONNACK from %s: %w", addr, err)
	}
	if typ != pktConnack || len(b) < 2 {
		nc.Close()
		return nil, fmt.Errorf("%s answered CONNECT with packet type %d: %w", addr, typ, ErrRefused)
	}
	if b[1] != 0 {
		nc.Close()
		return nil, fmt.Errorf("%s %s: %w", clientID, connackText(b[1]), ErrRefused)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func connackText(code byte) string {
	switch code {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "client id rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorized"
	}
	return fmt.Sprintf("return code %d", code)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// writePacket buffers one packet; the caller holds mu (or owns c alone)
// and flushes.
func (c *conn) writePacket(first byte, body []byte) {
	c.writeHeader(first, len(body))
	c.bw.Write(body)
}

func (c *conn) writeHeader(first byte, remaining int) {
	h := c.hdr[:0]
	h = append(h, first)
	for {
		b := byte(remaining & 0x7f)
		remaining >>= 7
		if remaining > 0 {
			b |= 0x80
		}
		h = append(h, b)
		if remaining == 0 {
			break
		}
	}
	c.bw.Write(h)
}

// publish buffers one PUBLISH; flush sends it. Batching several publishes
// into one flush saves a system call per message.
func (c *conn) publish(topic string, qos byte, id uint16, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	c.writeHeader(pktPublish<<4|qos<<1, n)
	c.bw.WriteByte(byte(len(topic) >> 8))
	c.bw.WriteByte(byte(len(topic)))
	c.bw.WriteString(topic)
	if qos > 0 {
		c.bw.WriteByte(byte(id >> 8))
		c.bw.WriteByte(byte(id))
	}
	c.bw.Write(payload)
}

// control sends a small packet (PUBACK, SUBSCRIBE, PINGREQ); flush false
// leaves it buffered for the next flush.
func (c *conn) control(first byte, body []byte, flush bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writePacket(first, body)
	if !flush {
		return nil
	}
	return c.bw.Flush()
}

func (c *conn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bw.Flush()
}

// subscribe sends SUBSCRIBE for one filter and waits for its SUBACK.
func (c *conn) subscribe(filter string, qos byte) error {
	body := binary.BigEndian.AppendUint16(nil, 1)
	body = appendString(body, filter)
	body = append(body, qos)
	if err := c.control(pktSubscribe<<4|0x02, body, true); err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		typ, _, b, err := c.read()
		if err != nil {
			return fmt.Errorf("wait for SUBACK of %s: %w", filter, err)
		}
		if typ != pktSuback {
			continue
		}
		if len(b) < 3 || b[2] == 0x80 {
			return fmt.Errorf("subscribe %s: %w", filter, ErrRefused)
		}
		return nil
	}
}

// read returns the next packet; body is valid until the next read.
func (c *conn) read() (typ, flags byte, body []byte, err error) {
	first, err := c.br.ReadByte()
	if err != nil {
		return 0, 0, nil, err
	}
	n, shift := 0, 0
	for {
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
		if shift > 21 {
			return 0, 0, nil, errors.New("malformed remaining length")
		}
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.br, c.buf); err != nil {
		return 0, 0, nil, err
	}
	return first >> 4, first & 0x0f, c.buf, nil
}

// keepAlive sends PINGREQ every interval until ctx is done.
func (c *conn) keepAlive(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.control(pktPingreq<<4, nil, true) != nil {
				return
			}
		}
	}
}

// disconnect sends DISCONNECT and closes.
func (c *conn) close() {
	c.mu.Lock()
	c.bw.Write([]byte{0xe0, 0})
	_ = c.bw.Flush()
	c.mu.Unlock()
	c.nc.Close()
}

// ping sends PINGREQ and waits up to timeout for PINGRESP, skipping any
// other packet. It is for connections without a reader goroutine.
func (c *conn) ping(timeout time.Duration) error {
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	if err := c.control(pktPingreq<<4, nil, true); err != nil {
		return fmt.Errorf("send PINGREQ: %w", err)
	}
	for {
		typ, _, _, err := c.read()
		if err != nil {
			return fmt.Errorf("wait for PINGRESP: %w", err)
		}
		if typ == pktPingresp {
			return nil
		}
	}
}
