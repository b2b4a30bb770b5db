# backends/collection.go: what a backend may do itself (patches/pushdown.go).
/^\tOnlyRecordIDs bool$/a\
\tPresort       *types.Document // one-key sort the backend may apply (appliance's build)\
\tCount         bool            // count only (appliance's build)
/^type ExplainParams struct {$/,/^}$/{
/^\tLimit  int64$/a\
\tPresort *types.Document // as in QueryParams (appliance's build)
}
