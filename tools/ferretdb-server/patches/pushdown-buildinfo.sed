# handler/msg_buildinfo.go: tell clients (the appliance) that this build pushes down.
s|^\t\t\t"ferretdbVersion", version.Get().Version,$|&\n\t\t\t"appliancePushdown", int32(1),|
