# accumulators.go: register $first and $push (patches/accumulators_first_push.go).
s|^\t"\$count": newCount,$|\t"$count": newCount,\n\t"$first": newFirst,\n\t"$push":  newPush,|
