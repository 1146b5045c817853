// main.cc - entry point of the mxsec program.
#include "cli.h"

int main(int argc, char** argv) { return mxsec::RunMxsec(argc, argv); }
