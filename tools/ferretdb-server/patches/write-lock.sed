# sqlite/collection.go: writes to one database queue in Go (patches/write_lock.go).
/^func (c \*collection) \(InsertAll\|UpdateAll\|DeleteAll\)(ctx context.Context, params/a\
\tdefer lockWrites(c.dbName)()
