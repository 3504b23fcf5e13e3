package rules

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
)

// CompileOptions say which optional features a condition may use.
type CompileOptions struct {
	// Anomaly enables anomaly(...); without it the function is refused with
	// "anomaly detection is not enabled".
	Anomaly bool
}

// CompileError is a condition that does not compile, with the position of
// the problem in the condition as written (line and column start at 1).
type CompileError struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
	Snippet string `json:"snippet,omitempty"` // the line with a caret under the position
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("condition does not compile at line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// Unwrap makes a CompileError match ErrInvalid.
func (e *CompileError) Unwrap() error { return ErrInvalid }

// Limits that keep a rule's memory per device bounded.
const (
	maxWindows   = 8
	maxWindowDur = 7 * 24 * time.Hour
	minWindowDur = time.Second
)

type aggFunc uint8

const (
	aggAvg aggFunc = iota
	aggMin
	aggMax
	aggSum
	aggCount
	aggRate
	aggStddev
)

var aggNames = map[string]aggFunc{"avg": aggAvg, "min": aggMin, "max": aggMax, "sum": aggSum, "count": aggCount, "rate": aggRate, "stddev": aggStddev}

// windowSpec is one per-device window a condition keeps.
type windowSpec struct {
	Field    string
	Dur      time.Duration
	Tumbling bool
}

type aggSlot struct {
	name  string // env variable the call was replaced with
	fn    aggFunc
	win   int    // index into Program.windows
	label string // e.g. avg(temperature, 5m), for alert values
}

type anomalySlot struct{ name, field string }

type absenceSlot struct {
	name         string
	field        string // "" = any data
	dur          time.Duration
	disconnected bool
}

// Program is a compiled condition. It is immutable and may be shared.
type Program struct {
	source    string
	prog      *vm.Program
	fields    []string // fields read directly; all must be known to evaluate
	numFields []string // fields whose value goes into an alert's values
	triggers  []string // fields whose arrival causes an evaluation
	windows   []windowSpec
	aggs      []aggSlot
	anomalies []anomalySlot
	absences  []absenceSlot
	usesTime  bool
	maxWindow time.Duration
	fast      *fastCond // the same condition without the VM, when simple enough
}

// Fields lists the message fields the condition reads, directly or through
// windows, sorted.
func (p *Program) Fields() []string { return append([]string(nil), p.triggers...) }

// Windows reports whether the condition keeps windowed aggregates.
func (p *Program) Windows() bool { return len(p.windows) > 0 }

// Absence reports whether the condition uses nodata or disconnected, which
// the engine also evaluates on its timer.
func (p *Program) Absence() bool { return len(p.absences) > 0 }

// reserved names are not message fields.
var reserved = map[string]bool{
	"tags": true, "props": true, "device": true, "site": true, "template": true,
	"hour": true, "minute": true, "weekday": true, "$env": true,
}

var timeNames = map[string]bool{"hour": true, "minute": true, "weekday": true}

// Compile compiles a rule condition. Message fields are identifiers
// (temperature, spindle.rpm) or field("name") for names that are not valid
// identifiers; tags.x, props.x, device, site, template, hour, minute and
// weekday describe the device and the time; avg, min, max, sum, count, rate
// and stddev over a duration (avg(temperature, 5m), optionally "tumbling")
// are per-device windows; nodata(5m), nodata(field, 5m) and
// disconnected(5m) detect absence; anomaly() and anomaly(field) read the
// anomaly score.
func Compile(src string, opts CompileOptions) (*Program, error) {
	rewritten, inserted := quoteDurations(src)
	pos := func(from int, msg string) error {
		return newCompileError(src, unshift(from, inserted), msg)
	}
	fileErr := func(err error) error {
		var fe *file.Error
		if errors.As(err, &fe) {
			return pos(fe.From, fe.Message)
		}
		return &CompileError{Line: 1, Column: 1, Message: err.Error()}
	}
	if strings.TrimSpace(src) == "" {
		return nil, &CompileError{Line: 1, Column: 1, Message: "the condition is empty; write one like temperature > 80"}
	}

	tree, err := parser.ParseWithConfig(rewritten, conf.CreateNew())
	if err != nil {
		return nil, fileErr(err)
	}
	p := &Program{source: src}
	pt := &patcher{opts: opts, p: p, lets: map[string]bool{}, fieldSet: map[string]bool{}, winIdx: map[windowSpec]int{}, aggIdx: map[string]string{}, trig: map[string]bool{}}
	ast.Walk(&tree.Node, letCollector(pt.lets))
	pt.rewrite(&tree.Node)
	if pt.err != nil {
		return nil, pos(pt.errAt, pt.err.Error())
	}

	decl := types.Map{
		"tags": types.TypeOf(map[string]any{}), "props": types.TypeOf(map[string]any{}),
		"device": types.String, "site": types.String, "template": types.String,
		"hour": types.Int, "minute": types.Int, "weekday": types.Int,
	}
	for f := range pt.fieldSet {
		decl[f] = types.Any // a field may carry a number or a string
	}
	for _, a := range p.aggs {
		decl[a.name] = types.Float64
	}
	for _, a := range p.anomalies {
		decl[a.name] = types.Float64
	}
	for _, a := range p.absences {
		decl[a.name] = types.Bool
	}
	config := conf.CreateNew()
	expr.Env(decl)(config)
	expr.AsBool()(config)
	if _, err := checker.Check(tree, config); err != nil {
		return nil, fileErr(err)
	}
	if err := optimizer.Optimize(&tree.Node, config); err != nil {
		return nil, fileErr(err)
	}
	prog, err := compiler.Compile(tree, config)
	if err != nil {
		return nil, fileErr(err)
	}
	p.prog = prog
	for f := range pt.fieldSet {
		p.fields = append(p.fields, f)
	}
	for f := range pt.trig {
		p.triggers = append(p.triggers, f)
	}
	sort.Strings(p.fields)
	sort.Strings(p.triggers)
	p.numFields = p.fields
	for _, w := range p.windows {
		if w.Dur > p.maxWindow {
			p.maxWindow = w.Dur
		}
	}
	p.fast = buildFast(tree.Node, p)
	return p, nil
}

// newCompileError places msg at rune offset off of src.
func newCompileError(src string, off int, msg string) *CompileError {
	line, col, lineStart, i := 1, 1, 0, 0
	for bi, r := range src {
		if i == off {
			break
		}
		if r == '\n' {
			line, col, lineStart = line+1, 1, bi+1
		} else {
			col++
		}
		i++
	}
	end := strings.IndexByte(src[lineStart:], '\n')
	text := src[lineStart:]
	if end >= 0 {
		text = src[lineStart : lineStart+end]
	}
	snippet := text + "\n" + strings.Repeat(" ", col-1) + "^"
	return &CompileError{Line: line, Column: col, Message: msg, Snippet: snippet}
}

// durationRe matches a duration literal such as 5m, 1h30m or 500ms.
var durationRe = regexp.MustCompile(`^(?:[0-9]+(?:\.[0-9]+)?(?:ms|us|µs|ns|h|m|s|d))+`)

// quoteDurations turns bare duration literals (5m) into strings ("5m"), which
// expr can parse, and returns the rune offsets of the quotes it inserted so
// error positions can be mapped back to the condition as written.
func quoteDurations(src string) (string, []int) {
	var b strings.Builder
	var inserted []int
	runes := 0 // runes written to b
	var quote rune
	prev := rune(0)
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRuneInString(src[i:])
		switch {
		case quote != 0:
			if r == '\\' && quote != '`' && i+size < len(src) {
				_, s2 := utf8.DecodeRuneInString(src[i+size:])
				b.WriteString(src[i : i+size+s2])
				i += size + s2
				runes += 2
				prev = 0
				continue
			}
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '/' && (strings.HasPrefix(src[i:], "//") || strings.HasPrefix(src[i:], "/*")):
			end := len(src)
			if src[i+1] == '/' {
				if j := strings.IndexByte(src[i:], '\n'); j >= 0 {
					end = i + j
				}
			} else if j := strings.Index(src[i+2:], "*/"); j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(src[i:end])
			runes += utf8.RuneCountInString(src[i:end])
			i = end
			prev = ' '
			continue
		case r >= '0' && r <= '9' && !identRune(prev) && prev != '.':
			if m := durationRe.FindString(src[i:]); m != "" {
				next, _ := utf8.DecodeRuneInString(src[i+len(m):])
				if i+len(m) == len(src) || !identRune(next) {
					inserted = append(inserted, runes)
					b.WriteByte('"')
					b.WriteString(m)
					b.WriteByte('"')
					inserted = append(inserted, runes+1+utf8.RuneCountInString(m))
					runes += 2 + utf8.RuneCountInString(m)
					i += len(m)
					prev = 'x'
					continue
				}
			}
		}
		b.WriteString(src[i : i+size])
		runes++
		i += size
		prev = r
	}
	return b.String(), inserted
}

func identRune(r rune) bool {
	return r == '_' || r == '$' || r == '#' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// unshift maps a rune offset in the rewritten condition back to the original.
func unshift(off int, inserted []int) int {
	n := 0
	for _, at := range inserted {
		if at < off {
			n++
		}
	}
	return off - n
}

// parseDuration is time.ParseDuration plus days ("2d").
func parseDuration(s string) (time.Duration, error) {
	if !strings.Contains(s, "d") {
		return time.ParseDuration(s)
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i <= 0 {
			return 0, fmt.Errorf("duration %q is not valid; write it like 90s, 5m, 2h or 1d", s)
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if unit == "d" {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q is not valid; write it like 90s, 5m, 2h or 1d", s)
			}
			total += time.Duration(f * float64(24*time.Hour))
			continue
		}
		d, err := time.ParseDuration(num + unit)
		if err != nil {
			return 0, fmt.Errorf("duration %q is not valid; write it like 90s, 5m, 2h or 1d", s)
		}
		total += d
	}
	return total, nil
}

type letCollector map[string]bool

func (l letCollector) Visit(n *ast.Node) {
	if v, ok := (*n).(*ast.VariableDeclaratorNode); ok {
		l[v.Name] = true
	}
}

// patcher rewrites a parsed condition: field references become env
// identifiers, and windows, anomaly and absence calls become slots the
// engine fills before each evaluation.
type patcher struct {
	opts     CompileOptions
	p        *Program
	lets     map[string]bool
	fieldSet map[string]bool
	trig     map[string]bool
	winIdx   map[windowSpec]int
	aggIdx   map[string]string
	err      error
	errAt    int
}

func (pt *patcher) fail(n ast.Node, format string, args ...any) {
	if pt.err == nil {
		pt.err = fmt.Errorf(format, args...)
		pt.errAt = n.Location().From
	}
}

func (pt *patcher) isField(name string) bool { return !reserved[name] && !pt.lets[name] }

func (pt *patcher) addField(name string) {
	pt.fieldSet[name] = true
	pt.trig[name] = true
}

// chain flattens a.b.c into "a.b.c" when it is a plain field reference.
func (pt *patcher) chain(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.IdentifierNode:
		if !pt.isField(v.Value) {
			return "", false
		}
		return v.Value, true
	case *ast.MemberNode:
		prop, ok := v.Property.(*ast.StringNode)
		if !ok || v.Optional || v.Method {
			return "", false
		}
		base, ok := pt.chain(v.Node)
		if !ok {
			return "", false
		}
		return base + "." + prop.Value, true
	}
	return "", false
}

func rootIdent(n ast.Node) *ast.IdentifierNode {
	for {
		switch v := n.(type) {
		case *ast.IdentifierNode:
			return v
		case *ast.MemberNode:
			n = v.Node
		default:
			return nil
		}
	}
}

// fieldArg reads a field name argument: temperature, spindle.rpm, "name"
// or field("name").
func (pt *patcher) fieldArg(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, v.Value != ""
	case *ast.CallNode:
		if id, ok := v.Callee.(*ast.IdentifierNode); ok && id.Value == "field" && len(v.Arguments) == 1 {
			if s, ok := v.Arguments[0].(*ast.StringNode); ok {
				return s.Value, s.Value != ""
			}
		}
		return "", false
	}
	return pt.chain(n)
}

func durationArg(n ast.Node) (time.Duration, bool) {
	if p, ok := n.(*ast.PredicateNode); ok {
		n = p.Node
	}
	s, ok := n.(*ast.StringNode)
	if !ok {
		return 0, false
	}
	d, err := parseDuration(s.Value)
	return d, err == nil
}

func (pt *patcher) rewrite(node *ast.Node) {
	if pt.err != nil {
		return
	}
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if reserved[n.Value] {
			if timeNames[n.Value] {
				pt.p.usesTime = true
			}
			return
		}
		if pt.lets[n.Value] {
			return
		}
		pt.addField(n.Value)
		return
	case *ast.MemberNode:
		if name, ok := pt.chain(n); ok {
			ast.Patch(node, &ast.IdentifierNode{Value: name})
			pt.addField(name)
			return
		}
		if root := rootIdent(n); root != nil && pt.isField(root.Value) {
			pt.fail(n, "a field name must be written out; for a computed or unusual name use field(\"name\")")
			return
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			break
		}
		switch id.Value {
		case "avg", "rate", "stddev":
			pt.window(node, id.Value, n.Arguments)
			return
		case "field":
			name := ""
			if len(n.Arguments) == 1 {
				if s, ok := n.Arguments[0].(*ast.StringNode); ok {
					name = s.Value
				}
			}
			if name == "" {
				pt.fail(n, "field needs one quoted field name, like field(\"spindle.rpm\")")
				return
			}
			ast.Patch(node, &ast.IdentifierNode{Value: name})
			pt.addField(name)
			return
		case "anomaly":
			pt.anomaly(node, n)
			return
		case "nodata", "disconnected":
			pt.absence(node, id.Value, n.Arguments)
			return
		}
		// Other calls: the callee is a function name, not a field.
		for i := range n.Arguments {
			pt.rewrite(&n.Arguments[i])
		}
		return
	case *ast.BuiltinNode:
		if _, ok := aggNames[n.Name]; ok && len(n.Arguments) >= 2 {
			if _, ok := durationArg(n.Arguments[1]); ok {
				pt.window(node, n.Name, n.Arguments)
				return
			}
		}
	}
	pt.children(*node)
}

// children rewrites every child of n.
func (pt *patcher) children(node ast.Node) {
	switch n := node.(type) {
	case *ast.UnaryNode:
		pt.rewrite(&n.Node)
	case *ast.BinaryNode:
		pt.rewrite(&n.Left)
		pt.rewrite(&n.Right)
	case *ast.ChainNode:
		pt.rewrite(&n.Node)
	case *ast.MemberNode:
		pt.rewrite(&n.Node)
		pt.rewrite(&n.Property)
	case *ast.SliceNode:
		pt.rewrite(&n.Node)
		if n.From != nil {
			pt.rewrite(&n.From)
		}
		if n.To != nil {
			pt.rewrite(&n.To)
		}
	case *ast.BuiltinNode:
		for i := range n.Arguments {
			pt.rewrite(&n.Arguments[i])
		}
	case *ast.PredicateNode:
		pt.rewrite(&n.Node)
	case *ast.VariableDeclaratorNode:
		pt.rewrite(&n.Value)
		pt.rewrite(&n.Expr)
	case *ast.SequenceNode:
		for i := range n.Nodes {
			pt.rewrite(&n.Nodes[i])
		}
	case *ast.ConditionalNode:
		pt.rewrite(&n.Cond)
		pt.rewrite(&n.Exp1)
		pt.rewrite(&n.Exp2)
	case *ast.ArrayNode:
		for i := range n.Nodes {
			pt.rewrite(&n.Nodes[i])
		}
	case *ast.MapNode:
		for i := range n.Pairs {
			pt.rewrite(&n.Pairs[i])
		}
	case *ast.PairNode:
		// A map key written as a bare word is a string, not a field.
		if _, ok := n.Key.(*ast.StringNode); !ok {
			pt.rewrite(&n.Key)
		}
		pt.rewrite(&n.Value)
	}
}

func (pt *patcher) window(node *ast.Node, fname string, args []ast.Node) {
	n := *node
	usage := fmt.Sprintf("write it like %s(temperature, 5m) or %s(temperature, 1h, \"tumbling\")", fname, fname)
	if len(args) < 2 || len(args) > 3 {
		pt.fail(n, "%s over a window takes a field and a duration; %s", fname, usage)
		return
	}
	field, ok := pt.fieldArg(args[0])
	if !ok {
		pt.fail(args[0], "the first argument of %s must be a field name; %s", fname, usage)
		return
	}
	dur, ok := durationArg(args[1])
	if !ok {
		pt.fail(args[1], "the second argument of %s must be a duration like 30s, 5m or 1h", fname)
		return
	}
	if dur < minWindowDur || dur > maxWindowDur {
		pt.fail(args[1], "the window of %s must be between 1s and 7d", fname)
		return
	}
	tumbling := false
	if len(args) == 3 {
		s, ok := args[2].(*ast.StringNode)
		if p, isPred := args[2].(*ast.PredicateNode); isPred {
			s, ok = p.Node.(*ast.StringNode)
		}
		if !ok || (s.Value != "tumbling" && s.Value != "sliding") {
			pt.fail(args[2], "the third argument of %s must be \"sliding\" (the default) or \"tumbling\"", fname)
			return
		}
		tumbling = s.Value == "tumbling"
	}
	spec := windowSpec{Field: field, Dur: dur, Tumbling: tumbling}
	wi, ok := pt.winIdx[spec]
	if !ok {
		if len(pt.p.windows) >= maxWindows {
			pt.fail(n, "a condition may use at most %d different windows", maxWindows)
			return
		}
		wi = len(pt.p.windows)
		pt.winIdx[spec] = wi
		pt.p.windows = append(pt.p.windows, spec)
	}
	fn := aggNames[fname]
	key := fmt.Sprintf("%d/%d", fn, wi)
	name, ok := pt.aggIdx[key]
	if !ok {
		name = fmt.Sprintf("__w%d", len(pt.p.aggs))
		pt.aggIdx[key] = name
		label := fmt.Sprintf("%s(%s, %s)", fname, field, durString(dur))
		if tumbling {
			label = fmt.Sprintf("%s(%s, %s, tumbling)", fname, field, durString(dur))
		}
		pt.p.aggs = append(pt.p.aggs, aggSlot{name: name, fn: fn, win: wi, label: label})
	}
	pt.trig[field] = true
	ast.Patch(node, &ast.IdentifierNode{Value: name})
}

func durString(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return d.String()
	}
	return s
}

func (pt *patcher) anomaly(node *ast.Node, n *ast.CallNode) {
	if !pt.opts.Anomaly {
		pt.fail(n, "anomaly detection is not enabled on this hub, so anomaly() cannot be used")
		return
	}
	// anomaly(score > 0.9) and anomaly(temperature, score > 0.9) are
	// anomaly() > 0.9 and anomaly(temperature) > 0.9 written the other way.
	args := n.Arguments
	var cmp *ast.BinaryNode
	if k := len(args); k > 0 {
		if b, ok := args[k-1].(*ast.BinaryNode); ok && comparison[b.Operator] {
			if id, ok := b.Left.(*ast.IdentifierNode); ok && id.Value == "score" {
				cmp, args = b, args[:k-1]
			}
		}
	}
	field := ""
	if len(args) > 1 {
		pt.fail(n, "anomaly takes at most one field and a score comparison, like anomaly(), anomaly(temperature), anomaly(score > 0.9) or anomaly(temperature, score > 0.9)")
		return
	}
	if len(args) == 1 {
		f, ok := pt.fieldArg(args[0])
		if !ok {
			pt.fail(args[0], "the argument of anomaly must be a field name or a score comparison, like anomaly(temperature) or anomaly(score > 0.9)")
			return
		}
		field = f
	}
	name := fmt.Sprintf("__a%d", len(pt.p.anomalies))
	pt.p.anomalies = append(pt.p.anomalies, anomalySlot{name: name, field: field})
	if cmp == nil {
		ast.Patch(node, &ast.IdentifierNode{Value: name})
		return
	}
	pt.rewrite(&cmp.Right)
	ast.Patch(node, &ast.BinaryNode{Operator: cmp.Operator, Left: &ast.IdentifierNode{Value: name}, Right: cmp.Right})
}

// comparison lists the operators anomaly(score …) accepts.
var comparison = map[string]bool{">": true, ">=": true, "<": true, "<=": true, "==": true, "!=": true}

func (pt *patcher) absence(node *ast.Node, fname string, args []ast.Node) {
	n := *node
	s := absenceSlot{disconnected: fname == "disconnected"}
	durNode := ast.Node(nil)
	switch {
	case len(args) == 1:
		durNode = args[0]
	case len(args) == 2 && !s.disconnected:
		f, ok := pt.fieldArg(args[0])
		if !ok {
			pt.fail(args[0], "the first argument of nodata must be a field name, like nodata(temperature, 10m)")
			return
		}
		s.field = f
		durNode = args[1]
	default:
		if s.disconnected {
			pt.fail(n, "disconnected takes a duration, like disconnected(5m)")
		} else {
			pt.fail(n, "nodata takes a duration and optionally a field first, like nodata(10m) or nodata(temperature, 10m)")
		}
		return
	}
	d, ok := durationArg(durNode)
	if !ok || d < minWindowDur {
		pt.fail(durNode, "%s needs a duration of at least 1s, like 5m", fname)
		return
	}
	s.dur = d
	prefix := "__n"
	if s.disconnected {
		prefix = "__c"
	}
	s.name = fmt.Sprintf("%s%d", prefix, len(pt.p.absences))
	pt.p.absences = append(pt.p.absences, s)
	ast.Patch(node, &ast.IdentifierNode{Value: s.name})
}
