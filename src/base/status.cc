// status.cc - Status and Result are header-only; this unit keeps the
// library's source list stable.
#include "mxsec/base/status.h"
