/*
 * common/version.h — the one version string of p11ca's programs and of the RPC server.
 * `p11cad --version`, `p11ca --version` and HealthResponse.server_version all show it.
 */
#ifndef P11CA_COMMON_VERSION_H
#define P11CA_COMMON_VERSION_H

#define P11CA_VERSION "0.3.0"

#endif
