package weights

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// payloadSize is not a multiple of any buffer size, so partial transfers end
// mid-buffer.
const payloadSize = 1<<20 + 12345

// testPayload returns deterministic pseudo-random bytes and their SHA-256.
func testPayload(seed uint64) ([]byte, string) {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), 'c', 'l', 'i', 'p'}))
	b := make([]byte, payloadSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// server is an httptest server that records what it was asked and sent.
type server struct {
	*httptest.Server
	payload []byte
	sha     string

	mu       sync.Mutex
	ranges   []string // Range header of each request ("" when absent)
	requests atomic.Int32
	sent     atomic.Int64 // body bytes written
}

// countingWriter counts the body bytes a handler writes.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c countingWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

// newServer serves payload through handle (nil: http.ServeContent, which
// honours Range requests) and closes itself when the test ends.
func newServer(t *testing.T, payload []byte, handle func(w http.ResponseWriter, r *http.Request, payload []byte)) *server {
	t.Helper()
	sum := sha256.Sum256(payload)
	s := &server{payload: payload, sha: hex.EncodeToString(sum[:])}
	if handle == nil {
		handle = func(w http.ResponseWriter, r *http.Request, p []byte) {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(p))
		}
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		handle(countingWriter{w, &s.sent}, r, payload)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) rangeHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// tinyCheckpoint is a test-only registry entry on the official host; the
// tests redirect it with Options.BaseURL.
func tinyCheckpoint(sha string) Checkpoint {
	return Checkpoint{
		Name:            "Tiny/1",
		URL:             officialHost + "/clip/models/" + sha + "/tiny.pt",
		SHA256:          sha,
		InputResolution: 32,
		EmbedDim:        8,
		ViT:             true,
	}
}

// testOptions returns options that fetch the tiny checkpoint with digest
// sha from s into a fresh cache, logging to log (nil: discarded).
func testOptions(t *testing.T, s *server, sha string, log io.Writer) Options {
	if log == nil {
		log = io.Discard
	}
	return Options{
		CacheDir: t.TempDir(),
		BaseURL:  s.URL,
		Extra:    []Checkpoint{tinyCheckpoint(sha)},
		Logger:   slog.New(slog.NewTextHandler(log, nil)),
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists (stat err %v), want it absent", path, err)
	}
}

func TestResolveFreshDownload(t *testing.T) {
	payload, sha := testPayload(1)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)

	got, err := Resolve(context.Background(), "Tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(o.CacheDir, "tiny.pt")
	if got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
	if !bytes.Equal(mustReadFile(t, got), payload) {
		t.Error("downloaded file differs from the served payload")
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if r := s.rangeHeaders(); r[0] != "" {
		t.Errorf("fresh download sent Range %q", r[0])
	}
	if n := s.sent.Load(); n != payloadSize {
		t.Errorf("server sent %d bytes, want %d", n, payloadSize)
	}
	assertMissing(t, got+".part")
	side := string(mustReadFile(t, got+".sha256"))
	if !strings.HasPrefix(side, sha+" 1060921 ") { // 1<<20 + 12345
		t.Errorf("sidecar %q does not record digest and size", side)
	}
}

func TestResolveCaseInsensitiveName(t *testing.T) {
	payload, sha := testPayload(2)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	got, err := Resolve(context.Background(), "tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustReadFile(t, got), payload) {
		t.Error("wrong content")
	}
}

func TestResolveCachedReuse(t *testing.T) {
	payload, sha := testPayload(3)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	ctx := context.Background()

	first, err := Resolve(ctx, "Tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Resolve(ctx, "Tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Errorf("second path %q != first %q", second, first)
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("%d requests after two resolves, want 1 (second from cache)", n)
	}
}

func TestResolveSidecarAvoidsRehash(t *testing.T) {
	payload, sha := testPayload(4)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	ctx := context.Background()
	path, err := Resolve(ctx, "Tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	// Same size and modification time, different bytes: the sidecar is
	// trusted, so the file is not re-read (a hash would catch the change).
	bad := bytes.Repeat([]byte{0xAB}, len(payload))
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(ctx, "Tiny/1", o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustReadFile(t, path), bad) || s.requests.Load() != 1 {
		t.Fatal("file re-verified although size and mtime matched the sidecar")
	}

	// A new modification time invalidates the sidecar: the file is hashed,
	// found wrong, and downloaded again.
	later := fi.ModTime().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(ctx, "Tiny/1", o); err != nil {
		t.Fatal(err)
	}
	if n := s.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (re-download of the corrupt file)", n)
	}
	if !bytes.Equal(mustReadFile(t, path), payload) {
		t.Error("corrupt cached file not replaced")
	}
}

func TestResolveHandPlacedFile(t *testing.T) {
	payload, sha := testPayload(5)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	path, err := CachePath("Tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(o.CacheDir, "tiny.pt") {
		t.Errorf("CachePath = %q", path)
	}
	if err := os.WriteFile(path, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(context.Background(), "Tiny/1", o)
	if err != nil || got != path {
		t.Fatalf("Resolve = %q, %v; want %q", got, err, path)
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("%d requests for a file already in the cache", n)
	}
	if side := string(mustReadFile(t, path+".sha256")); !strings.HasPrefix(side, sha+" ") {
		t.Errorf("sidecar %q not written after verification", side)
	}
}

func TestResolveResumesPartialDownload(t *testing.T) {
	payload, sha := testPayload(6)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	var progress bytes.Buffer
	o.Progress = &progress
	final := filepath.Join(o.CacheDir, "tiny.pt")
	const have = 400_000
	if err := os.WriteFile(final+".part", payload[:have], 0o644); err != nil {
		t.Fatal(err)
	}

	if _, err := Resolve(context.Background(), "Tiny/1", o); err != nil {
		t.Fatal(err)
	}
	if r := s.rangeHeaders(); len(r) != 1 || r[0] != "bytes=400000-" {
		t.Errorf("Range headers %q, want [bytes=400000-]", r)
	}
	if n := s.sent.Load(); n != payloadSize-have {
		t.Errorf("server sent %d bytes, want only the rest, %d", n, payloadSize-have)
	}
	if !bytes.Equal(mustReadFile(t, final), payload) {
		t.Error("resumed file differs from the payload")
	}
	assertMissing(t, final+".part")
	if !strings.Contains(progress.String(), "resuming at 390.6 KiB") {
		t.Errorf("progress does not mention the resumption:\n%s", progress.String())
	}
}

func TestResolveServerIgnoresRange(t *testing.T) {
	payload, sha := testPayload(7)
	s := newServer(t, payload, func(w http.ResponseWriter, r *http.Request, p []byte) {
		w.Write(p) // always 200 with the whole file
	})
	var log bytes.Buffer
	o := testOptions(t, s, sha, &log)
	final := filepath.Join(o.CacheDir, "tiny.pt")
	// Not a prefix of the payload: appending to it would fail the digest.
	if err := os.WriteFile(final+".part", bytes.Repeat([]byte{7}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(context.Background(), "Tiny/1", o); err != nil {
		t.Fatal(err)
	}
	if r := s.rangeHeaders(); len(r) != 1 || r[0] != "bytes=5000-" {
		t.Errorf("Range headers %q, want one request with bytes=5000-", r)
	}
	if !bytes.Equal(mustReadFile(t, final), payload) {
		t.Error("file differs from the payload (partial data not discarded?)")
	}
	if !strings.Contains(log.String(), "ignored the range request") {
		t.Errorf("no warning logged: %s", log.String())
	}
}

func TestResolveCompletePartFile(t *testing.T) {
	// A .part that already holds the whole file: the server answers 416 to
	// "bytes=N-" and the part is verified and installed.
	payload, sha := testPayload(8)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	final := filepath.Join(o.CacheDir, "tiny.pt")
	if err := os.WriteFile(final+".part", payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(context.Background(), "Tiny/1", o); err != nil {
		t.Fatal(err)
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if !bytes.Equal(mustReadFile(t, final), payload) {
		t.Error("installed file differs")
	}
	assertMissing(t, final+".part")
}

func TestResolveOversizedPartRestarts(t *testing.T) {
	// A .part longer than the file: 416, digest mismatch, so the part is
	// dropped and a fresh (Range-less) download follows.
	payload, sha := testPayload(9)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	final := filepath.Join(o.CacheDir, "tiny.pt")
	if err := os.WriteFile(final+".part", append(append([]byte(nil), payload...), 1, 2, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(context.Background(), "Tiny/1", o); err != nil {
		t.Fatal(err)
	}
	want := []string{"bytes=1060924-", ""} // payloadSize + 3
	if r := s.rangeHeaders(); len(r) != 2 || r[0] != want[0] || r[1] != want[1] {
		t.Errorf("Range headers %q, want %q", r, want)
	}
	if !bytes.Equal(mustReadFile(t, final), payload) {
		t.Error("installed file differs")
	}
}

func TestResolveChecksumMismatch(t *testing.T) {
	payload, _ := testPayload(10)
	_, otherSHA := testPayload(11)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, otherSHA, nil)
	final := filepath.Join(o.CacheDir, "tiny.pt")

	_, err := Resolve(context.Background(), "Tiny/1", o)
	if err == nil {
		t.Fatal("no error for a payload with the wrong digest")
	}
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *ChecksumError", err)
	}
	if ce.Expected != otherSHA || ce.Got != s.sha {
		t.Errorf("ChecksumError expected %s got %s; want %s and %s", ce.Expected, ce.Got, otherSHA, s.sha)
	}
	msg := err.Error()
	for _, want := range []string{"expected " + otherSHA, "got " + s.sha, final} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	assertMissing(t, final)
	assertMissing(t, final+".part")
	assertMissing(t, final+".sha256")
}

func TestResolveHTTPErrors(t *testing.T) {
	for _, code := range []int{http.StatusNotFound, http.StatusInternalServerError, http.StatusForbidden} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			payload, sha := testPayload(12)
			s := newServer(t, payload, func(w http.ResponseWriter, r *http.Request, p []byte) {
				http.Error(w, "nope", code)
			})
			o := testOptions(t, s, sha, nil)
			final := filepath.Join(o.CacheDir, "tiny.pt")
			_, err := Resolve(context.Background(), "Tiny/1", o)
			if err == nil {
				t.Fatal("no error")
			}
			var de *DownloadError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DownloadError", err)
			}
			url := s.URL + "/clip/models/" + sha + "/tiny.pt"
			if de.URL != url || de.Path != final || de.SHA256 != sha {
				t.Errorf("DownloadError fields %+v", de)
			}
			msg := err.Error()
			status := http.StatusText(code)
			for _, want := range []string{url, "HTTP " + strconv.Itoa(code) + " " + status, "place the file at " + final, sha} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			assertMissing(t, final)
			assertMissing(t, final+".part")
		})
	}
}

func TestResolveOffline(t *testing.T) {
	payload, sha := testPayload(13)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	s.Close() // nothing listens on that port any more
	final := filepath.Join(o.CacheDir, "tiny.pt")

	_, err := Resolve(context.Background(), "Tiny/1", o)
	if err == nil {
		t.Fatal("no error with the server down")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
	msg := err.Error()
	url := s.URL + "/clip/models/" + sha + "/tiny.pt"
	for _, want := range []string{"download CLIP checkpoint Tiny/1 from " + url, "place the file at " + final, "SHA-256 must be " + sha} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	assertMissing(t, final)
	assertMissing(t, final+".part")
}

func TestResolveInterruptedThenResumed(t *testing.T) {
	payload, sha := testPayload(14)
	const cut = 300_000
	var broken atomic.Bool
	broken.Store(true)
	s := newServer(t, payload, func(w http.ResponseWriter, r *http.Request, p []byte) {
		if !broken.Load() {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(p))
			return
		}
		// Promise the whole file, send part of it, drop the connection.
		w.Header().Set("Content-Length", strconv.Itoa(len(p)))
		w.Write(p[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	o := testOptions(t, s, sha, nil)
	final := filepath.Join(o.CacheDir, "tiny.pt")

	_, err := Resolve(context.Background(), "Tiny/1", o)
	if err == nil {
		t.Fatal("no error for a truncated transfer")
	}
	if msg := err.Error(); !strings.Contains(msg, "interrupted") || !strings.Contains(msg, final+".part") {
		t.Errorf("error %q does not say the transfer was interrupted and where the partial file is", msg)
	}
	assertMissing(t, final) // atomic: no final file after a failure
	part := mustReadFile(t, final+".part")
	if len(part) == 0 || len(part) > cut || !bytes.Equal(part, payload[:len(part)]) {
		t.Fatalf("partial file has %d bytes, want a non-empty prefix of at most %d", len(part), cut)
	}

	broken.Store(false)
	if _, err := Resolve(context.Background(), "Tiny/1", o); err != nil {
		t.Fatal(err)
	}
	r := s.rangeHeaders()
	if len(r) != 2 || r[1] != "bytes="+strconv.Itoa(len(part))+"-" {
		t.Errorf("Range headers %q, want the second to resume at %d", r, len(part))
	}
	if !bytes.Equal(mustReadFile(t, final), payload) {
		t.Error("resumed file differs")
	}
}

func TestResolveStallTimeout(t *testing.T) {
	payload, sha := testPayload(15)
	s := newServer(t, payload, func(w http.ResponseWriter, r *http.Request, p []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(p)))
		w.Write(p[:1000])
		w.(http.Flusher).Flush()
		<-r.Context().Done() // hang until the client gives up
	})
	o := testOptions(t, s, sha, nil)
	o.StallTimeout = 200 * time.Millisecond
	final := filepath.Join(o.CacheDir, "tiny.pt")

	start := time.Now()
	_, err := Resolve(context.Background(), "Tiny/1", o)
	if err == nil {
		t.Fatal("no error for a stalled transfer")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("stall detected after %s", el)
	}
	if msg := err.Error(); !strings.Contains(msg, "no data received for 200ms") {
		t.Errorf("error %q does not name the stall", msg)
	}
	assertMissing(t, final)
	if part := mustReadFile(t, final+".part"); !bytes.Equal(part, payload[:1000]) {
		t.Errorf("partial file has %d bytes, want the 1000 received", len(part))
	}
}

func TestResolveUnknownName(t *testing.T) {
	allNames := "valid names: RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px"
	tests := []struct {
		in      string
		suggest string // "" when no suggestion is expected
	}{
		{"ViT-B/23", "ViT-B/32"},
		{"vit-b-32", "ViT-B/32"},
		{"RN5O", "RN50"},
		{"ViT-L/14-336px", "ViT-L/14@336px"},
		{"resnet50", ""},
		{filepath.Join(t.TempDir(), "missing.pt"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			o := Options{CacheDir: t.TempDir(), BaseURL: "http://127.0.0.1:1"}
			_, err := Resolve(context.Background(), tc.in, o)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, "no such file and not a known model name") || !strings.Contains(msg, allNames) {
				t.Errorf("error %q lacks the explanation or the list of names", msg)
			}
			hint := `did you mean "` + tc.suggest + `"?`
			if tc.suggest != "" && !strings.Contains(msg, hint) {
				t.Errorf("error %q lacks %q", msg, hint)
			}
			if tc.suggest == "" && strings.Contains(msg, "did you mean") {
				t.Errorf("error %q suggests a name for an unrelated input", msg)
			}
		})
	}
	if _, err := Resolve(context.Background(), "", Options{}); err == nil {
		t.Error("no error for an empty name")
	}
}

func TestResolveExistingPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "my-model.pt")
	if err := os.WriteFile(p, []byte("not even a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(context.Background(), p, Options{CacheDir: t.TempDir(), BaseURL: "http://127.0.0.1:1"})
	if err != nil || got != p {
		t.Errorf("Resolve(existing file) = %q, %v; want %q unchanged", got, err, p)
	}
	_, err = Resolve(context.Background(), dir, Options{CacheDir: t.TempDir(), BaseURL: "http://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), dir) {
		t.Errorf("Resolve(directory) error = %v", err)
	}
}

func TestResolveCacheDirFromEnvironment(t *testing.T) {
	payload, sha := testPayload(16)
	s := newServer(t, payload, nil)
	env := t.TempDir()
	t.Setenv("CLIP_CACHE", env)
	o := testOptions(t, s, sha, nil)
	o.CacheDir = ""
	got, err := Resolve(context.Background(), "Tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(env, "tiny.pt"); got != want {
		t.Errorf("path %q, want %q under $CLIP_CACHE", got, want)
	}

	// Without CLIP_CACHE the default is ~/.cache/clip.
	home := t.TempDir()
	t.Setenv("CLIP_CACHE", "")
	t.Setenv("HOME", home)
	d, err := DefaultCacheDir()
	if err != nil || d != filepath.Join(home, ".cache", "clip") {
		t.Errorf("DefaultCacheDir = %q, %v; want %q", d, err, filepath.Join(home, ".cache", "clip"))
	}
	got, err = Resolve(context.Background(), "Tiny/1", o)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, ".cache", "clip", "tiny.pt"); got != want {
		t.Errorf("path %q, want %q", got, want)
	}
}

func TestResolveProgressNonTerminal(t *testing.T) {
	payload, sha := testPayload(17)
	s := newServer(t, payload, nil)

	t.Run("every write", func(t *testing.T) {
		o := testOptions(t, s, sha, nil)
		var buf bytes.Buffer
		o.Progress = &buf
		o.ProgressInterval = time.Nanosecond
		if _, err := Resolve(context.Background(), "Tiny/1", o); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if strings.Contains(out, "\r") || !strings.HasSuffix(out, "\n") {
			t.Fatalf("not plain newline-terminated lines: %q", out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		url := s.URL + "/clip/models/" + sha + "/tiny.pt"
		if want := "downloading Tiny/1: " + url + " -> " + filepath.Join(o.CacheDir, "tiny.pt"); lines[0] != want {
			t.Errorf("first line %q, want %q", lines[0], want)
		}
		if len(lines) < 4 {
			t.Fatalf("only %d lines with a 1 ns interval:\n%s", len(lines), out)
		}
		mid := lines[1]
		if !strings.HasPrefix(mid, "tiny.pt: ") || !strings.Contains(mid, " / 1.0 MiB (") || !strings.Contains(mid, "/s, ETA ") {
			t.Errorf("intermediate line %q lacks size, percentage, rate or ETA", mid)
		}
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "tiny.pt: 1.0 MiB / 1.0 MiB (100.0%), ") || !strings.Contains(last, "done after") {
			t.Errorf("last line %q", last)
		}
	})

	t.Run("default interval", func(t *testing.T) {
		o := testOptions(t, s, sha, nil)
		var buf bytes.Buffer
		o.Progress = &buf
		if _, err := Resolve(context.Background(), "Tiny/1", o); err != nil {
			t.Fatal(err)
		}
		// A sub-second download off a terminal: the header and the final
		// line only (the periodic line comes every 5 s).
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != 2 || !strings.Contains(lines[1], "(100.0%)") {
			t.Errorf("got %q", lines)
		}
	})
}

func TestResolveContextCanceled(t *testing.T) {
	payload, sha := testPayload(18)
	s := newServer(t, payload, nil)
	o := testOptions(t, s, sha, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Resolve(ctx, "Tiny/1", o)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	assertMissing(t, filepath.Join(o.CacheDir, "tiny.pt"))
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-999/1000", 100, 1000, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */1000", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes 5-9", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		start, size, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (start != tc.start || size != tc.size)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, start, size, ok, tc.start, tc.size, tc.ok)
		}
	}
}

// TestDigestUsesAFreshSidecar: Digest hashes a file without a sidecar,
// reads a sidecar recorded for the file's size and modification time
// (what verification writes beside a cached download), and hashes again
// once the file has changed.
func TestDigestUsesAFreshSidecar(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.pt")
	if err := os.WriteFile(path, []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Digest(path); err != nil || got != want {
		t.Fatalf("Digest = %q, %v; want %q", got, err, want)
	}
	fi, _ := os.Stat(path)
	const recorded = "0000000000000000000000000000000000000000000000000000000000000001"
	if err := writeSidecar(path, recorded, fi); err != nil {
		t.Fatal(err)
	}
	if got, _ := Digest(path); got != recorded {
		t.Errorf("Digest with a fresh sidecar = %q, want the recorded %q", got, recorded)
	}
	if err := os.WriteFile(path, []byte("other weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := Digest(path); got == recorded || got == want {
		t.Errorf("Digest after the file changed = %q: the stale sidecar was used", got)
	}
}
