package torchfile

import (
	"archive/zip"
	"regexp"
	"strings"
)

// classInfo is what a TorchScript class declares about its attributes.
type classInfo struct {
	params, buffers map[string]bool
	// hasBuffers is false for archives whose classes declare only
	// __parameters__; then every tensor attribute counts as state.
	hasBuffers bool
}

func (c *classInfo) isState(attr string) bool {
	return c.params[attr] || c.buffers[attr] || !c.hasBuffers
}

// Constant patterns: MustCompile cannot fail at run time.
var (
	classLine = regexp.MustCompile(`^class\s+(\w+)\s*\(\s*Module\s*\)\s*:`)
	listLine  = regexp.MustCompile(`^\s+(__parameters__|__buffers__)\s*=\s*\[(.*)\]`)
	quoted    = regexp.MustCompile(`"([^"]*)"|'([^']*)'`)
)

// scanClasses reads the module classes under <prefix>/code/. A class Foo in
// code/__torch__/a/b.py is __torch__.a.b.Foo; one in code/__torch__.py is
// __torch__.Foo.
func scanClasses(files map[string]*zip.File, prefix string) (map[string]*classInfo, error) {
	classes := make(map[string]*classInfo)
	root := prefix + "code/"
	for name, f := range files {
		if !strings.HasPrefix(name, root) || !strings.HasSuffix(name, ".py") {
			continue
		}
		module := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(name, root), ".py"), "/", ".")
		src, err := readAll(f, 64<<20)
		if err != nil {
			return nil, err
		}
		var cur *classInfo
		for _, line := range strings.Split(string(src), "\n") {
			if m := classLine.FindStringSubmatch(line); m != nil {
				cur = &classInfo{params: map[string]bool{}, buffers: map[string]bool{}}
				classes[module+"."+m[1]] = cur
				continue
			}
			if cur == nil {
				continue
			}
			if m := listLine.FindStringSubmatch(line); m != nil {
				set := cur.params
				if m[1] == "__buffers__" {
					set = cur.buffers
					cur.hasBuffers = true
				}
				for _, q := range quoted.FindAllStringSubmatch(m[2], -1) {
					set[q[1]+q[2]] = true
				}
			}
		}
	}
	return classes, nil
}
