#ifndef EPP_CHIREDIS_SHIM_H
#define EPP_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#endif
