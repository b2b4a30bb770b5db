# handler/msg_explain.go: explain the sorted find as the backend would run it.
/^\tres, err := coll.Explain(connCtx, qp)$/i\
\tqp.Presort = presortOf(h.DisablePushdown, params.Sort)
