// cli.h - the mxsec command line (the commands of man/mxsec.8).
#pragma once

namespace mxsec {
// Runs the program; returns the process exit status (sysexits.h).
int RunMxsec(int argc, char** argv);
}  // namespace mxsec
