// Added to FerretDB's handler by the appliance's build (tools/ferretdb-server/build):
// the handler's side of the SQLite backend's pushdown (backends/sqlite/pushdown.go).

package handler

import (
	"github.com/FerretDB/FerretDB/internal/handler/common"
	"github.com/FerretDB/FerretDB/internal/types"
	"github.com/FerretDB/FerretDB/internal/util/iterator"
)

// presortOf is the sort a backend may apply itself: one key other than $natural.
func presortOf(disabled bool, sort *types.Document) *types.Document {
	if disabled || sort.Len() != 1 || sort.Keys()[0] == "$natural" {
		return nil
	}
	return sort
}

// isPresorted reports whether the backend returned the documents already sorted.
func isPresorted(iter types.DocumentsIterator) bool {
	_, ok := iter.(interface{ Presorted() })
	return ok
}

// sortUnless sorts, unless the backend did.
func sortUnless(presorted bool, iter types.DocumentsIterator, closer *iterator.MultiCloser, sort *types.Document) (types.DocumentsIterator, error) {
	if presorted {
		return iter, nil
	}
	return common.SortIterator(iter, closer, sort)
}

// pushedCount is the count the backend made, after skip and limit, if it made one.
func pushedCount(iter types.DocumentsIterator, skip, limit int64) (int32, bool) {
	c, ok := iter.(interface{ PushedCount() int64 })
	if !ok {
		return 0, false
	}
	n := max(c.PushedCount()-skip, 0)
	if limit > 0 {
		n = min(n, limit)
	}
	return int32(n), true
}
