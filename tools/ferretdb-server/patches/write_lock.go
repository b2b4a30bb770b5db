// Added to FerretDB's SQLite backend by the appliance's build (tools/ferretdb-server/build).
//
// SQLite lets one writer at a time into a database; FerretDB lets every client's write
// try at once, and a write that finds the database locked sleeps in SQLite's busy handler
// (1, 2, 5, 10 ms ...) before it tries again, while the cores stay idle. Writes to one
// database queue on a Go mutex here instead, and the next one starts as soon as the
// last one ends.

package sqlite

import "sync"

var writers sync.Map // database name -> *sync.Mutex

// lockWrites waits for the database's other writes to end; call the result when done.
func lockWrites(db string) func() {
	m, _ := writers.LoadOrStore(db, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}
