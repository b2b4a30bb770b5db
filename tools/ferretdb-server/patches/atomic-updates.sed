# handler/msg_update.go and msg_findandmodify.go: the read and the write of each command
# under one lock per database (patches/atomic_updates.go).
/^func (h \*Handler) \(updateDocument\|findAndModifyDocument\)(ctx context.Context, params /a\
\tdefer lockModifies(params.DB)()
