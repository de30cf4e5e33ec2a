// Package packaging builds the redhaven .deb and .rpm packages with nfpm
// (used as a library) from nfpm.yaml, the systemd unit, the default config
// and the install scripts kept in this folder. The command in ./build wraps
// Build for `make package`.
package packaging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// Options says what to package and where.
type Options struct {
	// Config is the nfpm.yaml; its relative paths are resolved against its
	// folder. Required.
	Config string
	// Binary is the redhaven executable to ship as /usr/bin/redhaven.
	Binary string
	// Version is the raw version, e.g. from `git describe --tags --always
	// --dirty`; CleanVersion turns it into a deb/rpm version.
	Version string
	// Arch is a GOARCH name (amd64, arm64, ...); "" means runtime.GOARCH.
	// nfpm maps it to the deb (amd64) and rpm (x86_64) names.
	Arch string
	// OutDir receives the packages; created if missing.
	OutDir string
	// Formats are the nfpm packagers to run; nil means deb and rpm.
	Formats []string
}

var (
	describeRE = regexp.MustCompile(`^(.*)-([0-9]+)-g([0-9a-f]{4,40})$`)
	hashRE     = regexp.MustCompile(`^[0-9a-f]{7,40}$`)
	validRE    = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`)
)

// CleanVersion turns a `git describe --tags --always --dirty` result into a
// version valid for both dpkg and rpm that sorts the way releases do:
//
//	v1.2.3                  -> 1.2.3
//	v1.2.3-rc1              -> 1.2.3~rc1          (before 1.2.3)
//	v1.2.3-4-gabc1234       -> 1.2.3+4.gabc1234   (after 1.2.3)
//	v1.2.3-4-gabc1234-dirty -> 1.2.3+4.gabc1234.dirty
//	abc1234 (no tag yet)    -> 0.0.0~gabc1234     (before any release)
func CleanVersion(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("version: empty")
	}
	s, dirty := strings.CutSuffix(s, "-dirty")

	var v string
	switch m := describeRE.FindStringSubmatch(s); {
	case m != nil:
		v = tagVersion(m[1]) + "+" + m[2] + ".g" + m[3]
	case hashRE.MatchString(s) && !strings.Contains(s, "."):
		v = "0.0.0~g" + s
	default:
		v = tagVersion(s)
	}
	if dirty {
		if strings.Contains(v, "+") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	if !validRE.MatchString(v) {
		return "", fmt.Errorf("version %q: cleaned to %q, which is not a valid deb/rpm version (want a digit first, then only letters, digits, '.', '+', '~')", raw, v)
	}
	return v, nil
}

// tagVersion strips a leading "v" and turns a pre-release "-rc1" into "~rc1"
// (later dashes into dots), since dashes separate the release in deb and rpm.
func tagVersion(tag string) string {
	if len(tag) > 1 && (tag[0] == 'v' || tag[0] == 'V') && tag[1] >= '0' && tag[1] <= '9' {
		tag = tag[1:]
	}
	if base, pre, ok := strings.Cut(tag, "-"); ok {
		tag = base + "~" + strings.ReplaceAll(pre, "-", ".")
	}
	return tag
}

// Build writes one package per format into opts.OutDir and returns their
// paths: redhaven_<version>_<debarch>.deb and
// redhaven-<version>-1.<rpmarch>.rpm (nfpm's conventional names).
func Build(opts Options) ([]string, error) {
	if opts.Config == "" {
		return nil, errors.New("packaging: no nfpm config given")
	}
	if opts.OutDir == "" {
		return nil, errors.New("packaging: no output folder given")
	}
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("binary %q: %w", opts.Binary, err)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("binary %s: not an executable file", bin)
	}
	version, err := CleanVersion(opts.Version)
	if err != nil {
		return nil, err
	}
	arch := opts.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	formats := opts.Formats
	if formats == nil {
		formats = []string{"deb", "rpm"}
	}

	vars := map[string]string{
		"REDHAVEN_BIN":     bin,
		"REDHAVEN_VERSION": version,
		"REDHAVEN_ARCH":    arch,
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(opts.Config, func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	})
	if err != nil {
		return nil, fmt.Errorf("nfpm config %s: %w", opts.Config, err)
	}
	base, err := filepath.Abs(filepath.Dir(opts.Config))
	if err != nil {
		return nil, fmt.Errorf("nfpm config %s: %w", opts.Config, err)
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("output folder: %w", err)
	}

	var out []string
	for _, format := range formats {
		path, err := buildOne(&cfg, format, base, opts.OutDir)
		if err != nil {
			return out, fmt.Errorf("%s package: %w", format, err)
		}
		out = append(out, path)
	}
	return out, nil
}

func buildOne(cfg *nfpm.Config, format, base, outDir string) (string, error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	info, err := cfg.Get(format)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	// Paths in nfpm.yaml are relative to its folder, not to the caller's.
	for _, c := range info.Contents {
		c.Source = resolve(base, c.Source)
	}
	s := &info.Scripts
	s.PreInstall, s.PostInstall = resolve(base, s.PreInstall), resolve(base, s.PostInstall)
	s.PreRemove, s.PostRemove = resolve(base, s.PreRemove), resolve(base, s.PostRemove)
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}

	path := filepath.Join(outDir, packager.ConventionalFileName(info))
	f, err := os.CreateTemp(outDir, ".tmp-"+format+"-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := packager.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

func resolve(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}
