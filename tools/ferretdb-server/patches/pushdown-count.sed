# handler/msg_count.go: ask the backend for the count itself.
s|^\t\tqp.Filter = params.Filter$|\t\tqp.Filter = params.Filter\n\t\tqp.Count = true|
/^\titer := queryRes.Iter$/a\
\tif n, ok := pushedCount(iter, params.Skip, params.Limit); ok {\
\t\treturn documentOpMsg(must.NotFail(types.NewDocument("n", n, "ok", float64(1))))\
\t}
