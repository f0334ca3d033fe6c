package reload

import "syscall"

// errNoSpace is inotify's answer when its watch limit is reached.
var errNoSpace error = syscall.ENOSPC
