// Added to FerretDB's SQLite backend by the appliance's build (tools/ferretdb-server/build).
//
// The SQL expressions that filter and sort on a top-level field, shared by the indexes
// (registry.go, patched to use them) and the queries (../pushdown.go), which SQLite
// only serves from an index whose expressions are written exactly the same way.

package metadata

import (
	"fmt"
	"regexp"
	"strings"
)

// plainField is a top-level field whose name needs no quoting in a JSON path.
var plainField = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// PlainField reports whether the pushdown expressions may be used for field.
func PlainField(field string) bool {
	return field != "_id" && plainField.MatchString(field)
}

// Rank classes of BSON types in MongoDB's comparison order, from the sjson schema.
const (
	RankNull   = 1 // null, or the field is missing (MongoDB sorts both as null)
	RankNumber = 2
	RankString = 3
	RankObject = 4
	RankArray  = 5
)

// InexactRanks are the classes whose values SQLite does not order as MongoDB does
// (objects, arrays, binary data, timestamps, regular expressions).
const InexactRanks = "4, 5, 6, 10, 11"

// RankExpr is the SQL expression of the BSON type class of field's value.
func RankExpr(field string) string {
	return fmt.Sprintf(`(CASE %s->>'$."$s".p.%s.t' `+
		`WHEN 'double' THEN 2 WHEN 'int' THEN 2 WHEN 'long' THEN 2 WHEN 'string' THEN 3 `+
		`WHEN 'object' THEN 4 WHEN 'array' THEN 5 WHEN 'binData' THEN 6 `+
		`WHEN 'objectId' THEN 7 WHEN 'bool' THEN 8 WHEN 'date' THEN 9 `+
		`WHEN 'timestamp' THEN 10 WHEN 'regex' THEN 11 ELSE 1 END)`, DefaultColumn, field)
}

// ValueExpr is the SQL expression of field's value: text for strings and object ids,
// numbers for numbers, dates (milliseconds) and booleans, NULL for null or missing.
func ValueExpr(field string) string {
	return fmt.Sprintf(`%s->>'$.%s'`, DefaultColumn, field)
}

// indexColumns is one key of an index: its type class and value for a plain field of a
// non-unique index (the registry appends " DESC" to the last), FerretDB's own
// expression otherwise (a unique index keeps MongoDB's one-missing-value rule that way).
func indexColumns(field string, unique, descending bool) string {
	if unique || !PlainField(field) {
		parts := strings.Split(field, ".")
		for i, p := range parts {
			parts[i] = fmt.Sprintf("%q", p)
		}
		return fmt.Sprintf("%s->%s", DefaultColumn, strings.Join(parts, "->"))
	}
	order := ""
	if descending {
		order = " DESC"
	}
	return RankExpr(field) + order + ", " + ValueExpr(field)
}

// PushdownIndexMark is in the SQL of every index built with indexColumns' expressions.
const PushdownIndexMark = "->>'$."
