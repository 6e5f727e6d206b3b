// raftkv.go - the raftkv side of loadgen's failover trial, so that both
// systems' failover numbers come from the same writer loop, clock and
// analysis (the throughput load for raftkv comes from `raftkvctl bench`).
//
// A minimal raftkv client from proto/raftkv.proto and the framing in
// DESIGN.md alone (4-byte big-endian length + one protobuf message), encoded
// by hand with protowire (Debian's golang-google-protobuf-dev) so that no
// generated code is needed: SET with a session (client_id, sequence), STATUS,
// and the Response fields a writer needs (id, status, leader hint).
package main

import (
	"bufio"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// proto/raftkv.proto field numbers and enum values.
const (
	reqID       = 1
	reqClientID = 2
	reqSequence = 3
	reqSet      = 11
	reqStatus   = 15
	setKey      = 1
	setValue    = 2

	respID            = 1
	respStatus        = 2
	respMessage       = 3
	respLeaderID      = 4
	respLeaderAddress = 5
	respStatusInfo    = 15
	statusInfoNode    = 1
	nodeID            = 1
	nodeRole          = 2
	nodeTerm          = 3
	nodeLeaderID      = 4
	nodeClientAddress = 13

	stOK          = 0
	stNotLeader   = 2
	stUnavailable = 3
	stTimeout     = 7
)

var statusNames = map[uint64]string{0: "OK", 1: "NOT_FOUND", 2: "NOT_LEADER", 3: "UNAVAILABLE",
	4: "CAS_FAILED", 5: "INVALID_ARGUMENT", 6: "TOO_LARGE", 7: "TIMEOUT", 8: "INTERNAL"}

type rkvResponse struct {
	id            uint64
	status        uint64
	message       string
	leaderID      uint64
	leaderAddress string
	// STATUS from a node
	nodeID, term, nodeLeaderID uint64
	role, clientAddress        string
}

type rkvConn struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
	next uint64
}

// rkvTLS: TLS to the nodes (loadgen -cacert), nil for plaintext.
var rkvTLS *tls.Config

func rkvDial(addr string, timeout time.Duration) (*rkvConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if rkvTLS != nil {
		tc := tls.Client(c, rkvTLS)
		tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	return &rkvConn{addr: addr, c: c, r: bufio.NewReader(c), next: 1}, nil
}

func (k *rkvConn) Close() { k.c.Close() }

// call sends one request (body: the Request's fields other than id) and
// waits for the response with the same id.
func (k *rkvConn) call(body []byte, timeout time.Duration) (*rkvResponse, error) {
	id := k.next
	k.next++
	var msg []byte
	msg = protowire.AppendTag(msg, reqID, protowire.VarintType)
	msg = protowire.AppendVarint(msg, id)
	msg = append(msg, body...)
	frame := make([]byte, 4, 4+len(msg))
	binary.BigEndian.PutUint32(frame, uint32(len(msg)))
	frame = append(frame, msg...)
	k.c.SetDeadline(time.Now().Add(timeout))
	if _, err := k.c.Write(frame); err != nil {
		return nil, err
	}
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(k.r, hdr[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > 64<<20 {
			return nil, fmt.Errorf("frame of %d bytes", n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(k.r, buf); err != nil {
			return nil, err
		}
		r, err := parseResponse(buf)
		if err != nil {
			return nil, err
		}
		if r.id == id {
			return r, nil
		}
	}
}

func rkvSetBody(clientID, seq uint64, key, value []byte) []byte {
	var set []byte
	set = protowire.AppendTag(set, setKey, protowire.BytesType)
	set = protowire.AppendBytes(set, key)
	set = protowire.AppendTag(set, setValue, protowire.BytesType)
	set = protowire.AppendBytes(set, value)
	var b []byte
	b = protowire.AppendTag(b, reqClientID, protowire.VarintType)
	b = protowire.AppendVarint(b, clientID)
	b = protowire.AppendTag(b, reqSequence, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	b = protowire.AppendTag(b, reqSet, protowire.BytesType)
	b = protowire.AppendBytes(b, set)
	return b
}

func rkvStatusBody() []byte {
	var b []byte
	b = protowire.AppendTag(b, reqStatus, protowire.BytesType)
	b = protowire.AppendBytes(b, nil)
	return b
}

var errBadProto = errors.New("response does not parse")

// walk calls f for each field of a protobuf message.
func walk(b []byte, f func(num protowire.Number, typ protowire.Type, v uint64, bs []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadProto
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errBadProto
			}
			f(num, typ, v, nil)
			b = b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errBadProto
			}
			f(num, typ, 0, v)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errBadProto
			}
			b = b[n:]
		}
	}
	return nil
}

func parseResponse(b []byte) (*rkvResponse, error) {
	r := &rkvResponse{}
	var inner error
	err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) {
		switch {
		case num == respID && typ == protowire.VarintType:
			r.id = v
		case num == respStatus && typ == protowire.VarintType:
			r.status = v
		case num == respMessage && typ == protowire.BytesType:
			r.message = string(bs)
		case num == respLeaderID && typ == protowire.VarintType:
			r.leaderID = v
		case num == respLeaderAddress && typ == protowire.BytesType:
			r.leaderAddress = string(bs)
		case num == respStatusInfo && typ == protowire.BytesType:
			e := walk(bs, func(num protowire.Number, typ protowire.Type, v uint64, node []byte) {
				if num != statusInfoNode || typ != protowire.BytesType {
					return
				}
				e := walk(node, func(num protowire.Number, typ protowire.Type, v uint64, s []byte) {
					switch {
					case num == nodeID && typ == protowire.VarintType:
						r.nodeID = v
					case num == nodeRole && typ == protowire.BytesType:
						r.role = string(s)
					case num == nodeTerm && typ == protowire.VarintType:
						r.term = v
					case num == nodeLeaderID && typ == protowire.VarintType:
						r.nodeLeaderID = v
					case num == nodeClientAddress && typ == protowire.BytesType:
						r.clientAddress = string(s)
					}
				})
				if e != nil {
					inner = e
				}
			})
			if e != nil {
				inner = e
			}
		}
	})
	if err == nil {
		err = inner
	}
	return r, err
}

// rkvLeader asks every endpoint for STATUS and prints the one that says it
// leads (highest term wins): "LEADER id=N address=HOST:PORT term=T".
func rkvLeader(eps []string) int {
	var best *rkvResponse
	bestAddr := ""
	for _, ep := range eps {
		k, err := rkvDial(ep, 500*time.Millisecond)
		if err != nil {
			continue
		}
		r, err := k.call(rkvStatusBody(), time.Second)
		k.Close()
		if err != nil || r.status != stOK || r.role != "leader" {
			continue
		}
		if best == nil || r.term > best.term {
			best, bestAddr = r, ep
		}
	}
	if best == nil {
		fmt.Println("LEADER none")
		return 1
	}
	fmt.Printf("LEADER id=%d address=%s term=%d\n", best.nodeID, bestAddr, best.term)
	return 0
}

// rkvHealth: every endpoint answers STATUS, and all name the same leader,
// which says it leads.  Exit 0 when so.
func rkvHealth(eps []string) int {
	leaders := map[uint64]bool{}
	leading := 0
	for _, ep := range eps {
		k, err := rkvDial(ep, 500*time.Millisecond)
		if err != nil {
			fmt.Printf("%s: %v\n", ep, err)
			return 1
		}
		r, err := k.call(rkvStatusBody(), time.Second)
		k.Close()
		if err != nil || r.status != stOK {
			fmt.Printf("%s: no STATUS (%v)\n", ep, err)
			return 1
		}
		leaders[r.nodeLeaderID] = true
		if r.role == "leader" {
			leading++
		}
	}
	if len(leaders) != 1 || leaders[0] || leading != 1 {
		fmt.Println("no agreed leader")
		return 1
	}
	fmt.Println("healthy")
	return 0
}

// rkvWriter is one failover writer: SET after SET, following NOT_LEADER
// hints, moving to the next endpoint when a connection fails, sleeping 1 ms
// after any failed attempt (the same as the etcd writer).  It records the
// start and completion time of every successful write.
func rkvWriter(w int, eps []string, value []byte, stop <-chan struct{}, rec *writerLog) {
	cur := w % len(eps)
	addr := eps[cur]
	var k *rkvConn
	// A fresh session per writer and run (math/rand is not seeded in Go
	// 1.19: a fixed client id would collide with the last run's sessions).
	var idb [8]byte
	crand.Read(idb[:])
	clientID := binary.LittleEndian.Uint64(idb[:])>>2 | 1
	seq := uint64(0)
	pending := false // a write not yet acknowledged keeps its sequence
	for {
		select {
		case <-stop:
			if k != nil {
				k.Close()
			}
			return
		default:
		}
		if k == nil {
			var err error
			k, err = rkvDial(addr, 200*time.Millisecond)
			if err != nil {
				rec.errs++
				cur = (cur + 1) % len(eps)
				addr = eps[cur]
				k = nil
				time.Sleep(time.Millisecond)
				continue
			}
		}
		if !pending {
			seq++
			pending = true
		}
		t0 := time.Now()
		r, err := k.call(rkvSetBody(clientID, seq, []byte(fmt.Sprintf("failover-%03d-%d", w, seq%1000)), value), *opTimeout)
		if err != nil {
			rec.errs++
			k.Close()
			k = nil
			cur = (cur + 1) % len(eps)
			addr = eps[cur]
			time.Sleep(time.Millisecond)
			continue
		}
		switch r.status {
		case stOK:
			pending = false
			rec.add(t0, time.Now())
			continue
		case stNotLeader:
			if r.leaderAddress != "" && r.leaderAddress != addr {
				k.Close()
				k = nil
				addr = r.leaderAddress
			}
		}
		rec.errs++
		rec.lastErr = statusNames[r.status] + " " + r.message
		time.Sleep(time.Millisecond)
	}
}
