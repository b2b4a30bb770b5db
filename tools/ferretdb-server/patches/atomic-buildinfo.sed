# handler/msg_buildinfo.go: tell clients (the appliance) that conditional updates are atomic.
s|^\t\t\t"ferretdbVersion", version.Get().Version,$|&\n\t\t\t"applianceAtomicUpdates", int32(1),|
