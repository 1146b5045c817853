// cli.h - the mxsec command line (DESIGN.md "Users and entry points").
#pragma once

namespace mxsec {
// Runs the program; returns the process exit status (sysexits.h).
int RunMxsec(int argc, char** argv);
}  // namespace mxsec
