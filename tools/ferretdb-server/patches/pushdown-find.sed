# handler/msg_find.go: offer the sort to the backend, and do not sort again what it sorted.
/^\t\/\/ Limit pushdown is not applied if:$/i\
\tqp.Presort = presortOf(h.DisablePushdown, params.Sort)\

s|^\titer = common.FilterIterator(iter, closer, params.Filter)$|\tpresorted := isPresorted(iter)\n\titer = common.FilterIterator(iter, closer, params.Filter)|
s|^\titer, err := common.SortIterator(iter, closer, params.Sort)$|\titer, err := sortUnless(presorted, iter, closer, params.Sort)|
