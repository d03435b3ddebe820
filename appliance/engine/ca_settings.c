/* STUB (E1): CaSettings in the CA record. */
#include "appliance/engine/engine_internal.h"
