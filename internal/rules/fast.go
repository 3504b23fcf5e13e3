package rules

import (
	"github.com/expr-lang/expr/ast"
)

// fastCond evaluates the commonest conditions without the expression VM:
// a comparison of a field or a window aggregate with a number, or an
// all-&& or all-|| chain of such comparisons. It gives the same answer as
// the compiled program; when a field holds something other than a number
// it reports !ok and the VM decides (and reports the error).
type fastCond struct {
	or   bool
	cmps []fastCmp
}

type fastCmp struct {
	op    string // > >= < <= == !=
	field string // a message field, or "" when agg is set
	agg   int    // index into Program.aggs, or -1
	k     float64
}

// eval answers the condition from the device's field values: num[idx[i]]
// is the value of cmps[i]'s field when isNum says it is a number.
func (f *fastCond) eval(num []float64, isNum []bool, idx []int, aggs []float64) (res, ok bool) {
	for i := range f.cmps {
		c := &f.cmps[i]
		var v float64
		if c.agg >= 0 {
			v = aggs[c.agg]
		} else {
			j := idx[i]
			if !isNum[j] {
				return false, false
			}
			v = num[j]
		}
		r := c.test(v)
		if f.or && r {
			return true, true
		}
		if !f.or && !r {
			return false, true
		}
	}
	return !f.or, true
}

func (c *fastCmp) test(v float64) bool {
	switch c.op {
	case ">":
		return v > c.k
	case ">=":
		return v >= c.k
	case "<":
		return v < c.k
	case "<=":
		return v <= c.k
	case "==":
		return v == c.k
	case "!=":
		return v != c.k
	}
	return false
}

var mirrored = map[string]string{">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}

// buildFast recognises a condition fastCond can evaluate, from the checked
// and optimised tree; nil when it cannot.
func buildFast(n ast.Node, p *Program) *fastCond {
	if len(p.anomalies) > 0 || len(p.absences) > 0 || p.usesTime {
		return nil
	}
	f := &fastCond{}
	if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and" || b.Operator == "||" || b.Operator == "or") {
		f.or = b.Operator == "||" || b.Operator == "or"
		if !f.chain(n, p) {
			return nil
		}
		return f
	}
	c, ok := fastCompare(n, p)
	if !ok {
		return nil
	}
	f.cmps = []fastCmp{c}
	return f
}

func (f *fastCond) chain(n ast.Node, p *Program) bool {
	if b, ok := n.(*ast.BinaryNode); ok {
		switch b.Operator {
		case "&&", "and", "||", "or":
			if (b.Operator == "||" || b.Operator == "or") != f.or {
				return false
			}
			return f.chain(b.Left, p) && f.chain(b.Right, p)
		}
	}
	c, ok := fastCompare(n, p)
	if ok {
		f.cmps = append(f.cmps, c)
	}
	return ok
}

func fastCompare(n ast.Node, p *Program) (fastCmp, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return fastCmp{}, false
	}
	op, ok := mirrored[b.Operator]
	if !ok {
		return fastCmp{}, false
	}
	if k, isNum := number(b.Right); isNum {
		if c, ok := operand(b.Left, p); ok {
			c.op, c.k = b.Operator, k
			return c, true
		}
	}
	if k, isNum := number(b.Left); isNum {
		if c, ok := operand(b.Right, p); ok {
			c.op, c.k = op, k
			return c, true
		}
	}
	return fastCmp{}, false
}

func number(n ast.Node) (float64, bool) {
	switch v := n.(type) {
	case *ast.IntegerNode:
		return float64(v.Value), true
	case *ast.FloatNode:
		return v.Value, true
	}
	return 0, false
}

func operand(n ast.Node, p *Program) (fastCmp, bool) {
	id, ok := n.(*ast.IdentifierNode)
	if !ok {
		return fastCmp{}, false
	}
	for i := range p.aggs {
		if p.aggs[i].name == id.Value {
			return fastCmp{agg: i}, true
		}
	}
	for _, f := range p.fields {
		if f == id.Value {
			return fastCmp{field: f, agg: -1}, true
		}
	}
	return fastCmp{}, false
}
