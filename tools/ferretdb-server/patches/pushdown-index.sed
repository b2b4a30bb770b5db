# registry.go (indexesCreate): index a plain field by its type class and value, the
# expressions the pushed-down queries use (patches/pushdown_columns.go).
s|^\t\t\tcolumns\[i\] = fmt.Sprintf("%s->%s", DefaultColumn, strings.Join(fields, "->"))$|\t\t\tcolumns[i] = indexColumns(key.Field, index.Unique, key.Descending)|
