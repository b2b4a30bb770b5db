# FerretDB 1.24 keeps the read of every update statement of a command open until the
# whole command ends ("defer" inside the loop). Each open read holds one of the 100
# connections of the database's SQLite pool, and each update also needs a connection to
# write: a command of 100 or more updates (a bulk write) waits for ever, and with it every
# later command on that database. Close each statement's read when that statement is done.
s/^\t\tdefer closer\.Close()$/\t\t\/\/ closed below, after this statement (patched)/
s/^\t\tresult, err := common\.UpdateDocument(ctx, c, "update", iter, &u)$/&\n\t\tcloser.Close()/
