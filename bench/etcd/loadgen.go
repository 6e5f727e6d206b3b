// loadgen - a small closed-loop load generator for etcd 3.4, built against
// Debian's packaged client (golang-etcd-server-dev), for the side-by-side
// benchmark in bench/etcd-vs-raftkv.sh.  etcd's own benchmark tool is not
// packaged in Debian; this does the same job the same way: C concurrent
// clients, each a goroutine doing one request at a time (closed loop),
// spread round-robin over a few gRPC client connections.
//
// Build offline (GOPATH mode against /usr/share/gocode, no modules):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$tmp/gocache \
//	    go build -o $tmp/loadgen bench/etcd/loadgen.go
//
// Modes (etcd):
//
//	put       closed-loop puts of value-size bytes to random keys out of K
//	get       closed-loop gets of random keys out of K (linearizable unless
//	          --serializable); the K keys are written first, untimed
//	failover  continuous writers (--clients 8 typically), each doing one put
//	          at a time, 1 ms pause after a failed attempt, recording the
//	          send and completion time of every successful put.  Whoever
//	          kills the leader writes the kill time (ns since the epoch) to
//	          --kill-file; the run ends --after-kill after the first success
//	          that follows it (or at --duration) and prints the time from
//	          the kill to the first successful put sent after it, and the
//	          longest gap between two successive successful puts.
//
// "kill" SIGKILLs --pid and writes the time just before it to --kill-file.
// With --system raftkv (see raftkv.go) the same failover writer runs against
// raftkv nodes, following NOT_LEADER hints, and two helpers for the script:
// "leader" (which node leads, by STATUS) and "health" (every node answers
// and they agree on a leader).  raftkv's put/get load is `raftkvctl bench`.
//
// TLS: with -cacert (and -cert/-key for a client certificate) every
// connection runs TLS 1.3, to etcd (https://, the server's certificate must
// name the endpoint's address, as Go checks it) and to raftkv (the server's
// certificate is checked against the CA only, as raftkvctl does: raftkv's
// certificates name nodes, not addresses).
//
// The last line of output is machine-readable: "RESULT key=value ...".
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"math/rand"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.uber.org/zap"
)

var (
	endpoints    = flag.String("endpoints", "127.0.0.1:2379", "comma-separated client URLs or host:port")
	mode         = flag.String("mode", "put", "put | get | failover | kill; raftkv also: leader | health")
	clients      = flag.Int("clients", 64, "concurrent closed-loop clients")
	conns        = flag.Int("conns", 8, "gRPC client connections the clients are spread over")
	keys         = flag.Int("keys", 10000, "key space size K")
	valueSize    = flag.Int("value-size", 100, "value size in bytes")
	duration     = flag.Duration("duration", 15*time.Second, "measured run time")
	warmup       = flag.Duration("warmup", time.Second, "run time before measuring (put/get)")
	serializable = flag.Bool("serializable", false, "get: serializable (local) reads instead of linearizable")
	opTimeout    = flag.Duration("op-timeout", 2*time.Second, "deadline of one request")
	killFile     = flag.String("kill-file", "", "failover: file holding the kill time in ns since the epoch")
	timesFile    = flag.String("times-file", "", "failover: also write every success time (ns) here")
	noPopulate   = flag.Bool("no-populate", false, "get: do not write the K keys first")
	afterKill    = flag.Duration("after-kill", time.Second, "failover: keep writing this long after the first success after the kill, then stop")
	killPid      = flag.Int("pid", 0, "kill: the process to SIGKILL")
	system       = flag.String("system", "etcd", "etcd | raftkv (raftkv: modes failover and leader only)")
	caFile       = flag.String("cacert", "", "TLS: the CA (PEM) that issued the servers' certificates; set: TLS 1.3 everywhere")
	certFile     = flag.String("cert", "", "TLS: client certificate (PEM) to present")
	keyFile      = flag.String("key", "", "TLS: the client certificate's key (PEM)")
)

// clientTLS is the TLS configuration of -cacert/-cert/-key, nil without
// -cacert.  checkName: the server's certificate must name the address
// dialled (etcd); otherwise its chain to the CA alone is checked (raftkv).
func clientTLS(checkName bool) *tls.Config {
	die := func(err error) {
		fmt.Fprintf(os.Stderr, "loadgen: TLS: %v\n", err)
		os.Exit(2)
	}
	// A client certificate without -cacert would otherwise run the
	// benchmark in plaintext, and a half pair fail only at the handshake.
	if (*certFile == "") != (*keyFile == "") {
		die(errors.New("-cert and -key go together"))
	}
	if *caFile == "" {
		if *certFile != "" {
			die(errors.New("-cert needs -cacert (the CA that issued the servers' certificates)"))
		}
		return nil
	}
	pem, err := ioutil.ReadFile(*caFile)
	if err != nil {
		die(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		die(fmt.Errorf("%s: no certificate", *caFile))
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if *certFile != "" {
		kp, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			die(err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	if !checkName {
		c.InsecureSkipVerify = true // the chain is checked below, the name is not
		c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no server certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				x, perr := x509.ParseCertificate(r)
				if perr != nil {
					return perr
				}
				certs[i] = x
			}
			inter := x509.NewCertPool()
			for _, x := range certs[1:] {
				inter.AddCert(x)
			}
			_, verr := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return verr
		}
	}
	return c
}

func key(i int) string { return fmt.Sprintf("bench-%010d", i) }

func newClients() []*clientv3.Client {
	eps := strings.Split(*endpoints, ",")
	tc := clientTLS(true)
	scheme := "http://"
	if tc != nil {
		scheme = "https://"
	}
	for i, e := range eps {
		if !strings.Contains(e, "://") {
			eps[i] = scheme + e
		}
	}
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	lc.OutputPaths = []string{"stderr"}
	lc.ErrorOutputPaths = []string{"stderr"}
	n := *conns
	if n < 1 {
		n = 1
	}
	if n > *clients {
		n = *clients
	}
	cs := make([]*clientv3.Client, n)
	for i := range cs {
		// Rotate the endpoint list so each connection starts on a
		// different member (the balancer round-robins from there).
		rot := append(append([]string{}, eps[i%len(eps):]...), eps[:i%len(eps)]...)
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   rot,
			DialTimeout: 5 * time.Second,
			LogConfig:   &lc,
			TLS:         tc,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: connecting to %s: %v\n", *endpoints, err)
			os.Exit(1)
		}
		cs[i] = c
	}
	return cs
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }

// populate writes the K keys with the given clients, untimed.
func populate(cs []*clientv3.Client, value string) {
	var next int64 = -1
	var wg sync.WaitGroup
	var failed int64
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(c *clientv3.Client) {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= *keys {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Put(ctx, key(i), value)
				cancel()
				if err != nil {
					atomic.AddInt64(&failed, 1)
				}
			}
		}(cs[w%len(cs)])
	}
	wg.Wait()
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: populate: %d of %d puts failed\n", failed, *keys)
		os.Exit(1)
	}
}

func runLoad(cs []*clientv3.Client, value string) {
	get := *mode == "get"
	if get && !*noPopulate {
		t0 := time.Now()
		populate(cs, value)
		fmt.Fprintf(os.Stderr, "loadgen: wrote %d keys in %.1fs\n", *keys, time.Since(t0).Seconds())
	}
	var gopts []clientv3.OpOption
	if *serializable {
		gopts = append(gopts, clientv3.WithSerializable())
	}
	start := time.Now()
	measureFrom := start.Add(*warmup)
	end := measureFrom.Add(*duration)
	lats := make([][]time.Duration, *clients)
	errs := make([]int64, *clients)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int, c *clientv3.Client) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(w)*7919 + time.Now().UnixNano()))
			l := make([]time.Duration, 0, 1<<16)
			for {
				k := key(r.Intn(*keys))
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), *opTimeout)
				var err error
				if get {
					_, err = c.Get(ctx, k, gopts...)
				} else {
					_, err = c.Put(ctx, k, value)
				}
				cancel()
				t1 := time.Now()
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					errs[w]++
					firstErr.Store(err.Error())
					continue
				}
				l = append(l, t1.Sub(t0))
			}
			lats[w] = l
		}(w, cs[w%len(cs)])
	}
	wg.Wait()
	var all []time.Duration
	var nerr int64
	for w := range lats {
		all = append(all, lats[w]...)
		nerr += errs[w]
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	secs := duration.Seconds()
	tput := float64(len(all)) / secs
	kind := *mode
	if get {
		if *serializable {
			kind = "get-serializable"
		} else {
			kind = "get-linearizable"
		}
	}
	fmt.Printf("%s: %d clients over %d connections, %d keys, %d-byte values, %.0fs (after %.0fs warm-up)\n",
		kind, *clients, len(cs), *keys, *valueSize, secs, warmup.Seconds())
	fmt.Printf("  %d ok, %d errors, %.0f ops/s\n", len(all), nerr, tput)
	fmt.Printf("  latency ms: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		ms(pct(all, 50)), ms(pct(all, 90)), ms(pct(all, 99)), ms(pct(all, 99.9)), ms(pct(all, 100)))
	if e, ok := firstErr.Load().(string); ok {
		fmt.Printf("  first error: %s\n", e)
	}
	fmt.Printf("RESULT system=etcd mode=%s clients=%d conns=%d ops=%d errors=%d ops_per_s=%.0f p50_ms=%s p90_ms=%s p99_ms=%s p999_ms=%s max_ms=%s\n",
		kind, *clients, len(cs), len(all), nerr, tput,
		ms(pct(all, 50)), ms(pct(all, 90)), ms(pct(all, 99)), ms(pct(all, 99.9)), ms(pct(all, 100)))
}

// writerLog is one failover writer's record of its successful writes.
type writerLog struct {
	start, end []int64 // ns since the epoch: request sent, answer received
	errs       int64
	lastErr    string
}

// Set by runFailover's watcher once the kill file holds a time, and by the
// first write sent after that time to succeed.
var killNs, firstOkAfterKill int64

func (l *writerLog) add(t0, t1 time.Time) {
	s, e := t0.UnixNano(), t1.UnixNano()
	l.start = append(l.start, s)
	l.end = append(l.end, e)
	if k := atomic.LoadInt64(&killNs); k != 0 && s > k {
		atomic.CompareAndSwapInt64(&firstOkAfterKill, 0, e)
	}
}

type ev struct{ start, end int64 }

func endTimes(all []ev) []int64 {
	t := make([]int64, len(all))
	for i, e := range all {
		t[i] = e.end
	}
	return t
}

func readKillTime() (int64, bool) {
	if *killFile == "" {
		return 0, false
	}
	b, err := ioutil.ReadFile(*killFile)
	if err != nil {
		return 0, false
	}
	kill, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return kill, err == nil && kill > 0
}

// runFailover runs writers until --duration ends, SIGTERM/SIGINT, or
// --after-kill past the first success after the kill (the kill time appears
// in --kill-file, written by whoever kills the leader), then reports:
//
//	first_ok_ms  kill -> completion of the first successful write that was
//	             sent after the kill (a write sent before it may have been
//	             committed before it, and its answer only still in flight)
//	max_gap_ms   the longest time between two successive successful write
//	             completions (any writer) in the whole run
func runFailover(writer func(w int, stop <-chan struct{}, rec *writerLog)) {
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	logs := make([]writerLog, *clients)
	go func() {
		deadline := time.After(*duration)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sig:
				close(stop)
				return
			case <-deadline:
				close(stop)
				return
			case <-tick.C:
			}
			if atomic.LoadInt64(&killNs) == 0 {
				if k, ok := readKillTime(); ok {
					atomic.StoreInt64(&killNs, k)
				}
			}
			if f := atomic.LoadInt64(&firstOkAfterKill); f != 0 && time.Now().UnixNano()-f >= int64(*afterKill) {
				close(stop)
				return
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			writer(w, stop, &logs[w])
		}(w)
	}
	wg.Wait()

	var all []ev
	var nerr int64
	lastErr := ""
	for w := range logs {
		for i := range logs[w].end {
			all = append(all, ev{logs[w].start[i], logs[w].end[i]})
		}
		nerr += logs[w].errs
		if logs[w].lastErr != "" {
			lastErr = logs[w].lastErr
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].end < all[j].end })
	if *timesFile != "" {
		var b strings.Builder
		for _, e := range all {
			fmt.Fprintf(&b, "%d %d\n", e.start, e.end)
		}
		if err := ioutil.WriteFile(*timesFile, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		}
	}
	// The run's start and end count as successes, so a writer that never
	// got going or never recovered shows as one long gap.
	prev := start.UnixNano()
	var maxGap, gapEnd int64
	for _, t := range append(endTimes(all), time.Now().UnixNano()) {
		if t-prev > maxGap {
			maxGap, gapEnd = t-prev, t
		}
		prev = t
	}
	firstOK, firstAny := int64(-1), int64(-1)
	kill, haveKill := readKillTime()
	if haveKill {
		for _, e := range all {
			if e.end > kill && firstAny < 0 {
				firstAny = e.end - kill
			}
			if e.start > kill && (firstOK < 0 || e.end-kill < firstOK) {
				firstOK = e.end - kill
			}
		}
	}
	msOrNone := func(ns int64) string {
		if ns < 0 {
			return "-1"
		}
		return strconv.FormatFloat(float64(ns)/1e6, 'f', 1, 64)
	}
	gapAfterKill := "n/a"
	if haveKill {
		gapAfterKill = strconv.FormatFloat(float64(gapEnd-kill)/1e6, 'f', 1, 64)
	}
	fmt.Printf("failover writer (%s): %d clients, %d ok, %d failed attempts, first ok (sent after kill) %s ms, longest gap %.1f ms (ending %s ms after the kill)\n",
		*system, *clients, len(all), nerr, msOrNone(firstOK), float64(maxGap)/1e6, gapAfterKill)
	if lastErr != "" {
		fmt.Printf("  last failure: %s\n", lastErr)
	}
	fmt.Printf("RESULT system=%s mode=failover ops=%d errors=%d first_ok_ms=%s first_any_ms=%s max_gap_ms=%.1f gap_end_after_kill_ms=%s\n",
		*system, len(all), nerr, msOrNone(firstOK), msOrNone(firstAny), float64(maxGap)/1e6, gapAfterKill)
}

// killAndRecord: SIGKILL --pid, and write the time taken just before the
// kill(2) (ns since the epoch) to --kill-file, atomically.  Taking the time
// in the same process, microseconds before the kill, keeps the recorded kill
// time honest (a shell's `date; kill` can be milliseconds apart on a busy
// machine, and a write sent in between may still be committed by the old
// leader).
func killAndRecord() int {
	if *killPid <= 0 || *killFile == "" {
		fmt.Fprintln(os.Stderr, "loadgen: --mode kill needs --pid and --kill-file")
		return 2
	}
	t := time.Now().UnixNano()
	if err := syscall.Kill(*killPid, syscall.SIGKILL); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: kill %d: %v\n", *killPid, err)
		return 1
	}
	tmp := *killFile + ".tmp"
	if err := ioutil.WriteFile(tmp, []byte(strconv.FormatInt(t, 10)+"\n"), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return 1
	}
	if err := os.Rename(tmp, *killFile); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return 1
	}
	return 0
}

// etcdWriter is one failover writer against etcd: put after put on its
// connection (clientv3 fails over between the endpoints by itself), 1 ms
// sleep after a failed attempt.
func etcdWriter(c *clientv3.Client, value string) func(w int, stop <-chan struct{}, rec *writerLog) {
	return func(w int, stop <-chan struct{}, rec *writerLog) {
		seq := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), *opTimeout)
			_, err := c.Put(ctx, fmt.Sprintf("failover-%03d-%d", w, seq%1000), value)
			cancel()
			if err != nil {
				rec.errs++
				rec.lastErr = err.Error()
				time.Sleep(time.Millisecond)
				continue
			}
			seq++
			rec.add(t0, time.Now())
		}
	}
}

func main() {
	flag.Parse()
	if *clients < 1 || *keys < 1 || *valueSize < 0 {
		fmt.Fprintln(os.Stderr, "loadgen: --clients and --keys must be >= 1")
		os.Exit(2)
	}
	value := strings.Repeat("v", *valueSize)
	if *mode == "kill" {
		os.Exit(killAndRecord())
	}
	if *system == "raftkv" {
		rkvTLS = clientTLS(false)
		eps := strings.Split(*endpoints, ",")
		switch *mode {
		case "leader":
			os.Exit(rkvLeader(eps))
		case "health":
			os.Exit(rkvHealth(eps))
		case "failover":
			runFailover(func(w int, stop <-chan struct{}, rec *writerLog) {
				rkvWriter(w, eps, []byte(value), stop, rec)
			})
		default:
			fmt.Fprintf(os.Stderr, "loadgen: --system raftkv does modes failover and leader; raftkvctl bench does the load\n")
			os.Exit(2)
		}
		return
	}
	if *system != "etcd" {
		fmt.Fprintf(os.Stderr, "loadgen: unknown --system %q (etcd, raftkv)\n", *system)
		os.Exit(2)
	}
	cs := newClients()
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	switch *mode {
	case "put", "get":
		runLoad(cs, value)
	case "failover":
		writers := make([]func(int, <-chan struct{}, *writerLog), len(cs))
		for i, c := range cs {
			writers[i] = etcdWriter(c, value)
		}
		runFailover(func(w int, stop <-chan struct{}, rec *writerLog) {
			writers[w%len(writers)](w, stop, rec)
		})
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown --mode %q (put, get, failover)\n", *mode)
		os.Exit(2)
	}
}
