# util/resource/resource.go: FerretDB tracks each transaction, cursor and iterator it
# makes to find leaks (a pprof profile entry, which records the creator's stack, and a
# finalizer that panics if the object was never closed): 7 % of the server's CPU in a
# batch of the appliance's jobs. Off in this build.
s/^func Track(obj any, token \*Token) {$/func Track(obj any, token *Token) {\n\tif !trackResources {\n\t\treturn\n\t}/
s/^func Untrack(obj any, token \*Token) {$/func Untrack(obj any, token *Token) {\n\tif !trackResources {\n\t\treturn\n\t}/
$a\
\
// trackResources: off in the appliance's build (patches/untracked-resources.sed).\
const trackResources = false
