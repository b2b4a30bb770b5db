// Added to FerretDB's handler by the appliance's build (tools/ferretdb-server/build).
//
// FerretDB 1.24 runs update and findAndModify as a read of the matching documents
// followed by a write of each one by _id, with nothing held between the two: two clients
// updating one document under the same condition ({_id: x, lease_gen: 4}) both read it
// as matching, and both write ("modified": 1 for each). MongoDB applies each such update
// atomically, and the appliance's claims rely on it. Here the read and the write of
// every update and findAndModify command of one database happen under one lock, so a
// condition still holds when its write lands. Inserts and deletes do not take it: an
// insert of a new _id changes no document a condition was read from, and the appliance
// deletes nothing under a condition that an update could change.

package handler

import "sync"

var modifiers sync.Map // database name -> *sync.Mutex

// lockModifies waits for the database's other updates to end; call the result when done.
func lockModifies(db string) func() {
	m, _ := modifiers.LoadOrStore(db, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}
