# sqlite/collection.go: answer counts and sorted finds in SQLite when it can, and push
# filters down as a superset otherwise (patches/pushdown.go).
/^\tq := prepareSelectClause(meta.TableName, params.Comment, meta.Capped(), params.OnlyRecordIDs)$/i\
\tif res, ok, err := c.pushdownQuery(ctx, db, meta, params); ok || err != nil {\
\t\treturn res, err\
\t}\

s|^\tq += whereClause$|\twhereClause, args = pushdownWhere(params.Filter, whereClause, args)\n\tq += whereClause|
/^\tselectClause := prepareSelectClause(meta.TableName, "", meta.Capped(), false)$/i\
\tif res, ok, err := c.pushdownExplain(ctx, db, meta, params); ok || err != nil {\
\t\treturn res, err\
\t}\

