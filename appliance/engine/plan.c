/* STUB (E1): profile + CA + request layers -> x509_cert_spec. */
#include "appliance/engine/engine_internal.h"
