package gotchprep

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Function is one top-level function definition in a C++ source file.
type Function struct {
	Name       string
	ReturnType string
	// Signature is the text of the definition up to (not including) the
	// opening brace of its body.
	Signature string
	// Start and End are the 1-based first and last lines of the definition.
	Start, End int
}

// ParseFunctions finds the top-level function definitions in C++ source.
// It understands just enough C++ for gotch's wrapper files: comments, string
// and character literals, preprocessor lines and brace nesting.
func ParseFunctions(src string) []Function {
	lines := strings.Split(src, "\n")
	depth := 0
	inBlockComment := false
	var funcs []Function
	var cur *Function
	var sig strings.Builder // code at depth 0 since the last ';', '}' or directive
	sigStart := 0
	reset := func() { sig.Reset(); sigStart = 0 }
	for i, line := range lines {
		lineNo := i + 1
		if depth == 0 && !inBlockComment && strings.HasPrefix(strings.TrimSpace(line), "#") {
			reset()
			continue
		}
		for j := 0; j < len(line); j++ {
			c := line[j]
			if inBlockComment {
				if c == '*' && j+1 < len(line) && line[j+1] == '/' {
					inBlockComment = false
					j++
				}
				continue
			}
			switch {
			case c == '/' && j+1 < len(line) && line[j+1] == '/':
				j = len(line)
			case c == '/' && j+1 < len(line) && line[j+1] == '*':
				inBlockComment = true
				j++
			case c == '"' || c == '\'':
				k := skipLiteral(line, j)
				if depth == 0 {
					sig.WriteString(line[j:min(k+1, len(line))])
				}
				j = k
			case c == '{':
				if depth == 0 {
					if f, ok := functionHead(sig.String()); ok {
						f.Start = sigStart
						cur = &f
					}
				}
				depth++
			case c == '}':
				depth--
				if depth == 0 {
					if cur != nil {
						cur.End = lineNo
						funcs = append(funcs, *cur)
						cur = nil
					}
					reset()
				}
			case c == ';' && depth == 0:
				reset()
			default:
				if depth == 0 {
					if sigStart == 0 && c != ' ' && c != '\t' {
						sigStart = lineNo
					}
					sig.WriteByte(c)
				}
			}
		}
		if depth == 0 {
			sig.WriteByte(' ')
		}
	}
	return funcs
}

// skipLiteral returns the index of the closing quote of the literal that
// starts at line[j].
func skipLiteral(line string, j int) int {
	q := line[j]
	for k := j + 1; k < len(line); k++ {
		if line[k] == '\\' {
			k++
			continue
		}
		if line[k] == q {
			return k
		}
	}
	return len(line)
}

var headRE = regexp.MustCompile(`^(?s)(.*?[\w\*&>\s])\s*\b([A-Za-z_]\w*)\s*\((.*)\)\s*(const)?\s*$`)

// functionHead reports whether text (everything before a top-level '{') is a
// function definition's head, and parses its name and return type.
func functionHead(text string) (Function, bool) {
	text = strings.Join(strings.Fields(text), " ")
	for _, kw := range []string{"namespace", "struct", "class", "enum", "union", "extern", "typedef"} {
		if strings.HasPrefix(text, kw+" ") || text == kw {
			return Function{}, false
		}
	}
	if strings.Contains(text, "=") && !strings.Contains(text, "(") {
		return Function{}, false
	}
	m := headRE.FindStringSubmatch(text)
	if m == nil {
		return Function{}, false
	}
	ret := strings.TrimSpace(m[1])
	if ret == "" || ret == "return" || ret == "else" {
		return Function{}, false
	}
	return Function{Name: m[2], ReturnType: ret, Signature: text}, true
}

// Enclosing returns the function whose definition covers line, if any.
func Enclosing(funcs []Function, line int) (Function, bool) {
	i := sort.Search(len(funcs), func(i int) bool { return funcs[i].End >= line })
	if i < len(funcs) && funcs[i].Start <= line {
		return funcs[i], true
	}
	return Function{}, false
}

// cReturnTypes are the return types of gotch's C API; a stub of a function
// returning one of them sets gotch's last error and returns a zero value. Any
// other function is a C++ helper, whose stub throws (its callers run inside
// PROTECT, which turns the exception into gotch's last error).
var cReturnTypes = map[string]bool{
	"void": true, "tensor": true, "scalar": true, "optimizer": true, "module": true, "ivalue": true,
	"int": true, "int64_t": true, "size_t": true, "bool": true, "double": true, "float": true,
	"char *": true, "char*": true, "void *": true, "void*": true, "tensor *": true, "tensor*": true,
}

// StubMessage is the error message a stubbed wrapper reports.
func StubMessage(name, version string) string {
	return fmt.Sprintf("%s is not available in libtorch %s", name, version)
}

// Stub returns the source of a replacement definition for f that reports
// that it is not available in the given libtorch version.
func Stub(f Function, version string) string {
	msg := strconv.Quote(StubMessage(f.Name, version))
	var b strings.Builder
	fmt.Fprintf(&b, "%s {\n", f.Signature)
	b.WriteString("  // Stubbed by gotchprep: this wrapper does not compile against the installed libtorch.\n")
	if cReturnTypes[f.ReturnType] {
		fmt.Fprintf(&b, "  torch_last_err = strdup(%s);\n", msg)
		if f.ReturnType != "void" {
			b.WriteString("  return {};\n")
		}
	} else {
		fmt.Fprintf(&b, "  throw std::runtime_error(%s);\n", msg)
	}
	b.WriteString("}")
	return b.String()
}

// StubFunctions replaces the definitions of the named functions in src with
// stubs. It returns the new source and the names it stubbed, in source order.
// Names not defined in src are ignored.
func StubFunctions(src string, names map[string]bool, version string) (string, []string) {
	funcs := ParseFunctions(src)
	lines := strings.Split(src, "\n")
	var out []string
	var stubbed []string
	next := 1
	for _, f := range funcs {
		if !names[f.Name] || strings.Contains(strings.Join(lines[f.Start-1:f.End], "\n"), "Stubbed by gotchprep") {
			continue
		}
		out = append(out, lines[next-1:f.Start-1]...)
		stub := Stub(f, version)
		out = append(out, stub)
		next = f.End + 1
		stubbed = append(stubbed, f.Name)
	}
	out = append(out, lines[next-1:]...)
	return strings.Join(out, "\n"), stubbed
}

// diagRE matches a compiler diagnostic that points into a file: an error, or
// a note such as "required from here" (warnings are disabled with -w).
var diagRE = regexp.MustCompile(`^(\S+?):(\d+):(\d+): `)

// FailingLines parses compiler output and returns, for each file base name
// among files, the set of line numbers that diagnostics point to.
func FailingLines(compilerOutput string, files []string) map[string][]int {
	want := map[string]bool{}
	for _, f := range files {
		want[f] = true
	}
	seen := map[string]map[int]bool{}
	for _, line := range strings.Split(compilerOutput, "\n") {
		m := diagRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		base := m[1][strings.LastIndex(m[1], "/")+1:]
		if !want[base] {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		if seen[base] == nil {
			seen[base] = map[int]bool{}
		}
		seen[base][n] = true
	}
	res := map[string][]int{}
	for f, set := range seen {
		for n := range set {
			res[f] = append(res[f], n)
		}
		sort.Ints(res[f])
	}
	return res
}

// undefinedRE matches the linker's "in function `name':" context lines.
var undefinedRE = regexp.MustCompile("in function [`']([A-Za-z_]\\w*)'")

// UndefinedIn parses linker output and returns the functions that reference
// undefined symbols.
func UndefinedIn(linkerOutput string) map[string]bool {
	res := map[string]bool{}
	lines := strings.Split(linkerOutput, "\n")
	for i, line := range lines {
		m := undefinedRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if i+1 < len(lines) && strings.Contains(lines[i+1], "undefined reference") {
			res[m[1]] = true
		}
	}
	return res
}
