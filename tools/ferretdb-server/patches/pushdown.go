// Added to FerretDB's SQLite backend by the appliance's build (tools/ferretdb-server/build).
//
// FerretDB 1.24 hands SQLite an _id equality at most: every other filter, every sort and
// every count decodes each stored document in Go (6-7 s for 100,000 jobs). This file
// pushes the common case down: top-level fields compared with strings ({f: "x"},
// {f: {$eq: "x"}}, {f: {$in: [...]}}, {f: {$ne: "x"}}), one sort key, and count.
//
//   - Filter: always, as a superset (documents whose field is an array are kept; the
//     handler applies the whole filter to every document it is given anyway).
//   - Count (QueryParams.Count): when the whole filter is pushed down and no document has
//     an array in a filtered field, SQLite counts; the result says so (pushedCount).
//   - Sort (QueryParams.Presort): when the whole filter is pushed down, an index of the
//     collection starts with the filter's single-value equalities followed by the sort key,
//     and no document has an array in a filtered field or a value of a type SQLite orders
//     differently from MongoDB in the sort key. SQLite then reads in index order; the
//     result says so (presorted) and the handler does not sort, so a limit stops reading.
//
// Anything else is left to FerretDB as before.

package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/FerretDB/FerretDB/internal/backends"
	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/types"
	"github.com/FerretDB/FerretDB/internal/util/fsql"
	"github.com/FerretDB/FerretDB/internal/util/iterator"
	"github.com/FerretDB/FerretDB/internal/util/lazyerrors"
	"github.com/FerretDB/FerretDB/internal/util/must"
)

// pushedFilter is a filter translated to SQL.
type pushedFilter struct {
	exact    []string // conditions, exact for documents without arrays in the fields
	superset []string // conditions that keep every matching document
	args     []any    // of exact
	supArgs  []any    // of superset
	fields   []string // fields whose arrays make exact inexact
	equal    map[string]bool
	complete bool // every key of the filter was translated
}

// stringsOf returns the strings of a $in array, or false if any is not a string.
func stringsOf(v any) ([]string, bool) {
	arr, ok := v.(*types.Array)
	if !ok || arr.Len() == 0 {
		return nil, false
	}
	out := make([]string, 0, arr.Len())
	for i := 0; i < arr.Len(); i++ {
		s, ok := must.NotFail(arr.Get(i)).(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// comparison returns the operator ("$in" or "$ne") and strings of one field's condition.
func comparison(v any) (string, []string, bool) {
	switch v := v.(type) {
	case string:
		return "$in", []string{v}, true
	case *types.Document:
		if v.Len() != 1 {
			return "", nil, false
		}
		op := v.Keys()[0]
		arg := must.NotFail(v.Get(op))
		switch op {
		case "$eq", "$ne":
			if s, ok := arg.(string); ok {
				return map[string]string{"$eq": "$in", "$ne": "$ne"}[op], []string{s}, true
			}
		case "$in":
			if ss, ok := stringsOf(arg); ok {
				return "$in", ss, true
			}
		}
	}
	return "", nil, false
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// translate turns what it can of filter into SQL.
func translate(filter *types.Document) *pushedFilter {
	p := &pushedFilter{equal: map[string]bool{}, complete: true}
	if filter == nil {
		return p
	}
	for _, key := range filter.Keys() {
		if key == "$comment" {
			continue
		}
		op, values, ok := comparison(must.NotFail(filter.Get(key)))
		if !ok || !metadata.PlainField(key) {
			p.complete = false
			continue
		}
		rank, value := metadata.RankExpr(key), metadata.ValueExpr(key)
		args := make([]any, len(values))
		for i, s := range values {
			args[i] = s
		}
		p.fields = append(p.fields, key)
		switch op {
		case "$in":
			cond := fmt.Sprintf("%s = %d AND %s IN (%s)", rank, metadata.RankString, value, placeholders(len(values)))
			if len(values) == 1 {
				cond = fmt.Sprintf("%s = %d AND %s = ?", rank, metadata.RankString, value)
				p.equal[key] = true
			}
			p.exact = append(p.exact, cond)
			p.superset = append(p.superset, fmt.Sprintf("(%s OR %s = %d)", cond, rank, metadata.RankArray))
			p.args = append(p.args, args...)
			p.supArgs = append(p.supArgs, args...)
		case "$ne":
			cond := fmt.Sprintf("NOT (%s = %d AND %s = ?)", rank, metadata.RankString, value)
			p.exact = append(p.exact, cond)
			p.superset = append(p.superset, cond) // an array is kept: it is not a string
			p.args = append(p.args, args...)
			p.supArgs = append(p.supArgs, args...)
		}
	}
	return p
}

// pushdownWhere adds the superset conditions of filter to FerretDB's own WHERE clause.
func pushdownWhere(filter *types.Document, where string, args []any) (string, []any) {
	p := translate(filter)
	if len(p.superset) == 0 {
		return where, args
	}
	joined := strings.Join(p.superset, " AND ")
	if where == "" {
		return " WHERE " + joined, p.supArgs
	}
	return where + " AND " + joined, append(args, p.supArgs...)
}

// anyRow reports whether a row of table satisfies cond.
func anyRow(ctx context.Context, db *fsql.DB, table string, conds []string) (bool, error) {
	if len(conds) == 0 {
		return false, nil
	}
	parts := make([]string, len(conds))
	for i, c := range conds {
		parts[i] = fmt.Sprintf("EXISTS (SELECT 1 FROM %q WHERE %s)", table, c)
	}
	var found bool
	if err := db.QueryRowContext(ctx, "SELECT "+strings.Join(parts, " OR ")).Scan(&found); err != nil {
		return false, lazyerrors.Error(err)
	}
	return found, nil
}

// orderedIndex returns the name of an index that serves filter p sorted by field, if any.
func orderedIndex(ctx context.Context, db *fsql.DB, meta *metadata.Collection, p *pushedFilter, field string) (string, error) {
	for _, index := range meta.Settings.Indexes {
		n := len(p.equal)
		if index.Unique || len(index.Key) <= n || index.Key[n].Field != field {
			continue
		}
		serves := true
		for _, key := range index.Key[:n] {
			serves = serves && p.equal[key.Field]
		}
		if !serves {
			continue
		}
		var sql string
		name := meta.TableName + "_" + index.Name
		err := db.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", name).Scan(&sql)
		if err != nil {
			return "", lazyerrors.Error(err)
		}
		if strings.Contains(sql, metadata.PushdownIndexMark) {
			return name, nil
		}
	}
	return "", nil
}

// exactPlan is the SQL of a query answered wholly by SQLite, or "" if it cannot be.
func (c *collection) exactPlan(ctx context.Context, db *fsql.DB, meta *metadata.Collection, filter, sort *types.Document, count bool) (string, []any, error) {
	if meta.Capped() {
		return "", nil, nil
	}
	p := translate(filter)
	if !p.complete {
		return "", nil, nil
	}
	var order, field string
	if !count {
		if sort.Len() != 1 || !metadata.PlainField(sort.Keys()[0]) {
			return "", nil, nil
		}
		field = sort.Keys()[0]
		index, err := orderedIndex(ctx, db, meta, p, field)
		if err != nil || index == "" {
			return "", nil, err
		}
		dir := ""
		if must.NotFail(sort.Get(field)).(int64) < 0 {
			dir = " DESC"
		}
		order = fmt.Sprintf(" ORDER BY %s%s, %s%s", metadata.RankExpr(field), dir, metadata.ValueExpr(field), dir)
	}
	probes := make([]string, 0, len(p.fields)+1)
	for _, f := range p.fields {
		probes = append(probes, fmt.Sprintf("%s = %d", metadata.RankExpr(f), metadata.RankArray))
	}
	if field != "" {
		probes = append(probes, fmt.Sprintf("%s IN (%s)", metadata.RankExpr(field), metadata.InexactRanks))
	}
	if found, err := anyRow(ctx, db, meta.TableName, probes); err != nil || found {
		return "", nil, err
	}
	where := ""
	if len(p.exact) > 0 {
		where = " WHERE " + strings.Join(p.exact, " AND ")
	}
	if count {
		return fmt.Sprintf("SELECT COUNT(*) FROM %q%s", meta.TableName, where), p.args, nil
	}
	return prepareSelectClause(meta.TableName, "", false, false) + where + order, p.args, nil
}

// presorted is a query's documents in the order the query asked for.
type presorted struct {
	types.DocumentsIterator
}

// Presorted marks the iterator for the handler, which then does not sort.
func (presorted) Presorted() {}

// counted is a count made by SQLite; it yields no documents.
type counted struct {
	n int64
}

func (counted) Next() (struct{}, *types.Document, error) {
	return struct{}{}, nil, iterator.ErrIteratorDone
}

func (counted) Close() {}

// PushedCount is the number of documents that match the whole filter.
func (c counted) PushedCount() int64 { return c.n }

// pushdownQuery answers a count or a sorted find wholly in SQLite, if it can (ok).
func (c *collection) pushdownQuery(ctx context.Context, db *fsql.DB, meta *metadata.Collection, params *backends.QueryParams) (*backends.QueryResult, bool, error) {
	if !params.Count && params.Presort == nil || params.OnlyRecordIDs {
		return nil, false, nil
	}
	q, args, err := c.exactPlan(ctx, db, meta, params.Filter, params.Presort, params.Count)
	if err != nil || q == "" {
		return nil, false, err
	}
	if params.Count {
		var n int64
		if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			return nil, false, lazyerrors.Error(err)
		}
		return &backends.QueryResult{Iter: counted{n: n}}, true, nil
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, lazyerrors.Error(err)
	}
	return &backends.QueryResult{Iter: presorted{newQueryIterator(ctx, rows, false)}}, true, nil
}

// pushdownExplain is the plan of a sorted find that pushdownQuery would answer.
func (c *collection) pushdownExplain(ctx context.Context, db *fsql.DB, meta *metadata.Collection, params *backends.ExplainParams) (*backends.ExplainResult, bool, error) {
	if params.Presort == nil {
		return nil, false, nil
	}
	q, args, err := c.exactPlan(ctx, db, meta, params.Filter, params.Presort, false)
	if err != nil || q == "" {
		return nil, false, err
	}
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		return nil, false, lazyerrors.Error(err)
	}
	defer rows.Close()
	plan := must.NotFail(types.NewArray())
	for rows.Next() {
		var id, parent, notused int32
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return nil, false, lazyerrors.Error(err)
		}
		plan.Append(fmt.Sprintf("id=%d parent=%d notused=%d detail=%s", id, parent, notused, detail))
	}
	if err := rows.Err(); err != nil {
		return nil, false, lazyerrors.Error(err)
	}
	return &backends.ExplainResult{
		QueryPlanner:   must.NotFail(types.NewDocument("Plan", plan)),
		FilterPushdown: true,
		SortPushdown:   true,
	}, true, nil
}
