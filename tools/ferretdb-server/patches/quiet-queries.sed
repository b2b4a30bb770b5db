# fsql/db.go and fsql/tx.go: each SQL query built a logger and formatted its text twice
# for a debug message, even with debug logging off (5 % of the server's CPU under the
# appliance's submissions); now only when it is on.
s/^\t\(db\|tx\)\.l\.With(fields\.\.\.)\.DebugContext(\(.*\))$/\tif \1.l.Enabled(ctx, slog.LevelDebug) {\n\t\t\1.l.With(fields...).DebugContext(\2)\n\t}/
