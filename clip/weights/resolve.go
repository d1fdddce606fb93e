package weights

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clipadapter/clipgo/clip/openclip"
	"github.com/clipadapter/clipgo/internal/fsutil"
	"github.com/clipadapter/clipgo/internal/progress"
)

// Options control where Resolve caches checkpoints and how it downloads
// them. The zero value is ready to use.
type Options struct {
	// CacheDir is the download cache. Empty means $CLIP_CACHE, or
	// ~/.cache/clip when that is unset or empty.
	CacheDir string
	// Progress receives download progress; nil reports nothing. On a
	// terminal one line is redrawn in place, elsewhere a plain line is
	// written every ProgressInterval.
	Progress io.Writer
	// ProgressInterval is the time between progress reports; 0 means
	// 100 ms on a terminal and 5 s elsewhere.
	ProgressInterval time.Duration
	// Client performs the requests; nil means a default client.
	Client *http.Client
	// BaseURL, when set, replaces the scheme and host of every checkpoint
	// URL (the path is kept), e.g. a mirror or a test server. Empty means
	// the official host.
	BaseURL string
	// Extra holds further checkpoints (a mirror's own files, test
	// fixtures). They are consulted before the official and OpenCLIP
	// ones, so an entry with a known name overrides it.
	Extra []Checkpoint
	// StallTimeout aborts a download that receives no data for this long
	// (the partial file is kept for resumption); 0 means one minute.
	StallTimeout time.Duration
	// Logger receives warnings (a corrupt cached file, a server that
	// ignores range requests); nil means slog.Default().
	Logger *slog.Logger
}

// DefaultCacheDir returns the cache used when Options.CacheDir is empty:
// $CLIP_CACHE if set and non-empty, else ~/.cache/clip.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("CLIP_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("clip cache directory: set CLIP_CACHE or HOME: %w", err)
	}
	return filepath.Join(home, ".cache", "clip"), nil
}

// cacheDir returns o.CacheDir or the default.
func (o Options) cacheDir() (string, error) {
	if o.CacheDir != "" {
		return o.CacheDir, nil
	}
	return DefaultCacheDir()
}

// registry returns the extra checkpoints followed by the known ones.
func (o Options) registry() []Checkpoint {
	return append(slices.Clone(o.Extra), known()...)
}

// sourceURL returns the URL to fetch c from, honouring BaseURL.
func (o Options) sourceURL(c Checkpoint) (string, error) {
	return o.rebase(c.Name, c.URL)
}

// rebase returns raw with its scheme and host replaced by BaseURL's.
func (o Options) rebase(name, raw string) (string, error) {
	if o.BaseURL == "" {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: bad URL %q: %w", name, raw, err)
	}
	s := strings.TrimRight(o.BaseURL, "/") + u.EscapedPath()
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	return s, nil
}

// CachePath returns where Resolve keeps the checkpoint called name:
// <cache>/<file name of its URL> for OpenAI's,
// <cache>/open_clip/<org>--<repo>/open_clip_model.safetensors for
// OpenCLIP's. It neither checks nor downloads the file.
func CachePath(name string, o Options) (string, error) {
	c, ok := lookupIn(o.registry(), name)
	if !ok {
		return "", unknownName(name, o.registry(), nil)
	}
	dir, err := o.cacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, c.cacheRel()), nil
}

// Resolve returns the path of a checkpoint file.
//
// If nameOrPath names an existing regular file, it is returned unchanged.
// Otherwise it must be a checkpoint name (official, case-insensitive, or one
// of o.Extra). If the cache holds that checkpoint's file with the right
// SHA-256 its path is returned; the digest is computed once and remembered
// in a "<file>.sha256" sidecar keyed by size and modification time, so
// later calls do not re-read the file. Otherwise the file is downloaded to
// "<file>.part" (resuming an earlier partial download with a range
// request), its SHA-256 is checked, and it is renamed into place.
//
// Download failures are reported as a *DownloadError, which names the URL,
// the path where the file can be placed by hand, and the expected SHA-256.
func Resolve(ctx context.Context, nameOrPath string, o Options) (string, error) {
	if nameOrPath == "" {
		return "", errors.New("clip checkpoint: empty model name or path")
	}
	reg := o.registry()
	ck, known := lookupIn(reg, nameOrPath)
	fi, statErr := os.Stat(nameOrPath)
	switch {
	case statErr == nil && fi.Mode().IsRegular():
		return nameOrPath, nil
	case statErr == nil && !known:
		return "", fmt.Errorf("clip checkpoint %s: not a regular file (%s)", nameOrPath, fi.Mode().Type())
	case !known:
		if errors.Is(statErr, fs.ErrNotExist) {
			statErr = nil
		}
		return "", unknownName(nameOrPath, reg, statErr)
	}

	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := o.cacheDir()
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, ck.cacheRel())
	candidates := []string{final}
	var fallback string
	if ck.FallbackURL != "" {
		fallback = filepath.Join(filepath.Dir(final), path.Base(ck.FallbackURL))
		candidates = append(candidates, fallback)
	}
	for _, c := range candidates {
		ok, err := verifiedCache(c, ck.SHA256, log)
		if err != nil {
			return "", err
		}
		if ok {
			return c, writeConfig(c, ck)
		}
	}
	src, err := o.sourceURL(ck)
	if err != nil {
		return "", err
	}
	if err := o.download(ctx, ck, src, final, log); err != nil {
		var de *DownloadError
		if fallback == "" || !errors.As(err, &de) || !errors.Is(de.Err, errNotFound) {
			return "", err
		}
		log.Info("no safetensors file; downloading the PyTorch state dict", "checkpoint", ck.Name, "url", src)
		if src, err = o.rebase(ck.Name, ck.FallbackURL); err != nil {
			return "", err
		}
		if err := o.download(ctx, ck, src, fallback, log); err != nil {
			return "", err
		}
		final = fallback
	}
	return final, writeConfig(final, ck)
}

// errNotFound is the cause of a DownloadError for an HTTP 404 answer.
var errNotFound = errors.New("HTTP 404 Not Found")

// download fetches src into final (through final.part) and verifies it.
func (o Options) download(ctx context.Context, ck Checkpoint, src, final string, log *slog.Logger) error {
	j := &job{
		name: ck.Name, url: src, final: final, part: final + ".part", sha: strings.ToLower(ck.SHA256),
		pinned: ck.SHA256 != "", client: o.Client, progress: o.Progress, interval: o.ProgressInterval,
		stall: o.StallTimeout, log: log,
	}
	if j.client == nil {
		j.client = &http.Client{}
	}
	if j.stall <= 0 {
		j.stall = time.Minute
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return j.fail(fmt.Errorf("create cache directory: %w", err))
	}
	return j.run(ctx)
}

// writeConfig writes the checkpoint's OpenCLIP configuration next to the
// file at path, unless it is already there.
func writeConfig(path string, ck Checkpoint) error {
	if ck.OpenCLIPConfig == nil {
		return nil
	}
	p := filepath.Join(filepath.Dir(path), openclip.ConfigFileName)
	if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, ck.OpenCLIPConfig) {
		return nil
	}
	if err := fsutil.WriteFile(p, ck.OpenCLIPConfig, 0o644); err != nil {
		return fmt.Errorf("clip checkpoint %s: write its OpenCLIP config: %w", ck.Name, err)
	}
	return nil
}

// unknownName builds the error for a name that is neither a file nor a
// known checkpoint, suggesting the nearest valid name.
func unknownName(name string, reg []Checkpoint, statErr error) error {
	names := make([]string, len(reg))
	for i, c := range reg {
		names[i] = c.Name
	}
	var b strings.Builder
	fmt.Fprintf(&b, "clip checkpoint %q: no such file and not a known model name", name)
	if statErr != nil {
		fmt.Fprintf(&b, " (%v)", statErr)
	}
	if s := suggestIn(reg, name); s != "" {
		fmt.Fprintf(&b, "; did you mean %q?", s)
	}
	var openai, other []string
	for i, c := range reg {
		if c.Arch != "" {
			other = append(other, names[i])
		} else {
			openai = append(openai, names[i])
		}
	}
	fmt.Fprintf(&b, "; valid names: %s", strings.Join(openai, ", "))
	if len(other) > 0 {
		fmt.Fprintf(&b, ", and %d OpenCLIP names such as %s (listed in the README)", len(other), other[0])
	}
	return errors.New(b.String())
}

// DownloadError reports a checkpoint that could not be downloaded, with
// what a user needs to install it by hand.
type DownloadError struct {
	Name   string // checkpoint name
	URL    string // URL that was requested
	Path   string // full path where the file belongs
	SHA256 string // expected SHA-256 of the file ("" when the server was to publish it)
	Err    error  // underlying cause
}

// Error implements error.
func (e *DownloadError) Error() string {
	sha := "must be " + e.SHA256
	if e.SHA256 == "" {
		sha = "is the one the server publishes for it (the Hugging Face Hub shows it on the file's page)"
	}
	return fmt.Sprintf("download CLIP checkpoint %s from %s: %v (to install it by hand, fetch that URL elsewhere and place the file at %s; its SHA-256 %s)",
		e.Name, e.URL, e.Err, e.Path, sha)
}

// Unwrap returns the underlying cause.
func (e *DownloadError) Unwrap() error { return e.Err }

// ChecksumError reports downloaded data whose SHA-256 is not the expected
// one. The partial file has been deleted.
type ChecksumError struct {
	Path     string // the deleted partial file
	Expected string
	Got      string
}

// Error implements error.
func (e *ChecksumError) Error() string {
	return fmt.Sprintf("SHA-256 mismatch: expected %s, got %s (deleted %s)", e.Expected, e.Got, e.Path)
}

// job is one checkpoint download.
type job struct {
	name, url, final, part, sha string
	// pinned reports a digest from the registry; otherwise sha is taken
	// from the server's answer.
	pinned          bool
	client          *http.Client
	progress        io.Writer
	interval, stall time.Duration
	log             *slog.Logger
}

// fail wraps err in a DownloadError for this job.
func (j *job) fail(err error) error {
	sha := j.sha
	if !j.pinned {
		sha = ""
	}
	return &DownloadError{Name: j.name, URL: j.url, Path: j.final, SHA256: sha, Err: err}
}

// run downloads the file, restarting from scratch at most once when the
// partial file cannot be resumed.
func (j *job) run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		restart, err := j.fetch(ctx)
		if !restart {
			return err
		}
		if err := os.Remove(j.part); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return j.fail(fmt.Errorf("remove unusable partial file: %w", err))
		}
		if attempt > 0 {
			return j.fail(errors.New("server answered a fresh download with a partial response"))
		}
	}
}

// fetch makes one request. It reports restart when the partial file cannot
// be resumed and must be deleted before trying again.
func (j *job) fetch(ctx context.Context) (restart bool, err error) {
	h := sha256.New()
	var offset int64
	if fi, err := os.Stat(j.part); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		if err := hashInto(h, j.part); err != nil {
			return false, j.fail(err)
		}
		offset = fi.Size()
	}

	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	timer := time.AfterFunc(j.stall, func() { stalled.Store(true); cancel() })
	defer timer.Stop()
	explain := func(err error) error {
		if stalled.Load() {
			return fmt.Errorf("no data received for %s: %w", j.stall, err)
		}
		return err
	}

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, j.url, nil)
	if err != nil {
		return false, j.fail(err)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	client := j.client
	if !j.pinned {
		// The Hub sends the digest on its redirect to the storage host.
		c := *j.client
		next := j.client.CheckRedirect
		c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
			if r.Response != nil {
				if d := hubDigest(r.Response.Header); d != "" {
					j.sha = d
				}
			}
			if next != nil {
				return next(r, via)
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}
		client = &c
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, j.fail(explain(err))
	}
	defer resp.Body.Close()
	if !j.pinned && resp.StatusCode < 300 {
		if d := hubDigest(resp.Header); d != "" && j.sha == "" {
			j.sha = d
		}
		if j.sha == "" {
			return false, j.fail(errors.New("the server did not publish the file's SHA-256 (no X-Linked-Etag or ETag header holding one), so the download cannot be verified"))
		}
	}

	total := int64(-1)
	var f *os.File
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			j.log.Warn("unexpected Content-Range; restarting the download",
				"url", j.url, "content_range", resp.Header.Get("Content-Range"), "have", offset)
			return true, nil
		}
		total = size
		f, err = os.OpenFile(j.part, os.O_WRONLY|os.O_APPEND, 0o644)
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			j.log.Warn("server ignored the range request; restarting the download", "url", j.url, "had", offset)
			h.Reset()
			offset = 0
		}
		total = resp.ContentLength
		f, err = os.OpenFile(j.part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		// Nothing after offset: the partial file may already be complete.
		if hex.EncodeToString(h.Sum(nil)) == j.sha {
			return false, j.install()
		}
		j.log.Warn("partial file is not a prefix of the checkpoint; restarting the download", "path", j.part)
		return true, nil
	case resp.StatusCode == http.StatusNotFound:
		return false, j.fail(errNotFound)
	default:
		return false, j.fail(fmt.Errorf("HTTP %s", resp.Status))
	}
	if err != nil {
		return false, j.fail(fmt.Errorf("open partial file: %w", err))
	}

	var bar *progress.Bar
	sink := io.Writer(io.MultiWriter(f, h))
	if j.progress != nil {
		verb := "downloading"
		if offset > 0 {
			verb = fmt.Sprintf("resuming at %s", progress.FormatBytes(offset))
		}
		fmt.Fprintf(j.progress, "%s %s: %s -> %s\n", verb, j.name, j.url, j.final)
		bar = progress.NewBytes(j.progress, filepath.Base(j.final), total, offset, j.interval)
		sink = io.MultiWriter(f, h, bar)
	}
	n, copyErr := io.Copy(sink, &stallReader{r: resp.Body, timer: timer, d: j.stall})
	if bar != nil {
		status := "done"
		if copyErr != nil {
			status = "interrupted"
		}
		bar.End(status)
	}
	if copyErr != nil {
		f.Close()
		return false, j.fail(fmt.Errorf("transfer interrupted after %s: %w; the partial file %s is kept and the next attempt resumes from it",
			progress.FormatBytes(offset+n), explain(copyErr), j.part))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, j.fail(fmt.Errorf("sync %s: %w", j.part, err))
	}
	if err := f.Close(); err != nil {
		return false, j.fail(fmt.Errorf("close %s: %w", j.part, err))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != j.sha {
		if err := os.Remove(j.part); err != nil {
			j.log.Warn("cannot delete corrupt download", "path", j.part, "err", err)
		}
		return false, j.fail(&ChecksumError{Path: j.part, Expected: j.sha, Got: got})
	}
	return false, j.install()
}

// install renames the verified partial file into place and records its
// digest in the sidecar.
func (j *job) install() error {
	if err := os.Rename(j.part, j.final); err != nil {
		return j.fail(fmt.Errorf("install: %w", err))
	}
	syncDir(filepath.Dir(j.final))
	fi, err := os.Stat(j.final)
	if err != nil {
		return j.fail(fmt.Errorf("install: %w", err))
	}
	if err := writeSidecar(j.final, j.sha, fi); err != nil {
		j.log.Warn("cannot record checksum; the file will be re-hashed next time", "path", j.final, "err", err)
	}
	return nil
}

// stallReader resets timer whenever data arrives.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

// Read implements io.Reader.
func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

// parseContentRange parses "bytes START-END/SIZE"; size is -1 for "*".
func parseContentRange(v string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	span, total, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, _, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	size = -1
	if total != "*" {
		if size, err = strconv.ParseInt(total, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}

// hashInto feeds the contents of path to h.
func hashInto(h hash.Hash, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// FileSHA256 returns the lower-case hex SHA-256 of the file at path.
func FileSHA256(path string) (string, error) {
	h := sha256.New()
	if err := hashInto(h, path); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Digest returns the SHA-256 of the file at path, from the sidecar that
// verification recorded beside a cached download when it still matches
// the file's size and modification time, else by hashing the file (a
// user's own file gets no sidecar written beside it).
func Digest(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if sha, ok := readSidecar(path, fi); ok {
		return sha, nil
	}
	return FileSHA256(path)
}

// verifiedCache reports whether path holds a file with SHA-256 want. It
// trusts a sidecar recorded for the same size and modification time;
// otherwise it hashes the file and, on a match, records the sidecar. A
// mismatching file is left in place (a download will replace it).
func verifiedCache(path, want string, log *slog.Logger) (bool, error) {
	want = strings.ToLower(want)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("clip checkpoint cache: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("clip checkpoint cache: %s is not a regular file", path)
	}
	if sha, ok := readSidecar(path, fi); ok && (sha == want || want == "") {
		return true, nil
	}
	if want == "" {
		// Placed by hand, with no published digest to check it against.
		log.Warn("using a checkpoint placed in the cache by hand without verifying it: its SHA-256 is not in the registry", "path", path)
		got, err := FileSHA256(path)
		if err != nil {
			return false, fmt.Errorf("clip checkpoint cache: %w", err)
		}
		if err := writeSidecar(path, got, fi); err != nil {
			log.Warn("cannot record checksum", "path", path, "err", err)
		}
		return true, nil
	}
	got, err := FileSHA256(path)
	if err != nil {
		return false, fmt.Errorf("clip checkpoint cache: %w", err)
	}
	if got != want {
		log.Warn("cached checkpoint has the wrong SHA-256; downloading it again", "path", path, "expected", want, "got", got)
		os.Remove(sidecarPath(path))
		return false, nil
	}
	if err := writeSidecar(path, got, fi); err != nil {
		log.Warn("cannot record checksum; the file will be re-hashed next time", "path", path, "err", err)
	}
	return true, nil
}

// sidecarPath is where the verified digest of path is recorded.
func sidecarPath(path string) string { return path + ".sha256" }

// readSidecar returns the digest recorded for path if the record matches
// fi's size and modification time.
func readSidecar(path string, fi fs.FileInfo) (string, bool) {
	b, err := os.ReadFile(sidecarPath(path))
	if err != nil {
		return "", false
	}
	fields := strings.Fields(string(b))
	if len(fields) != 3 {
		return "", false
	}
	size, err1 := strconv.ParseInt(fields[1], 10, 64)
	mtime, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil || size != fi.Size() || mtime != fi.ModTime().UnixNano() {
		return "", false
	}
	return strings.ToLower(fields[0]), true
}

// writeSidecar records sha for path's current size and modification time,
// atomically: "<sha256> <size> <mtime in Unix nanoseconds>\n".
func writeSidecar(path, sha string, fi fs.FileInfo) error {
	record := fmt.Sprintf("%s %d %d\n", sha, fi.Size(), fi.ModTime().UnixNano())
	return fsutil.WriteFile(sidecarPath(path), []byte(record), 0o644)
}

// syncDir flushes a directory entry to disk where the platform allows it;
// failures are ignored (the rename itself already happened).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
