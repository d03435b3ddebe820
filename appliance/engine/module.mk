# appliance/engine/: the engine process — CA logic, group commit, every RPC operation.
LIBS += engine
engine_SRCS := appliance/engine/engine.c appliance/engine/dispatch.c \
               appliance/engine/commit.c appliance/engine/status.c \
               appliance/engine/select.c appliance/engine/ca_cache.c appliance/engine/summary.c \
               appliance/engine/issue.c appliance/engine/ca.c appliance/engine/ca_init.c \
               appliance/engine/cert.c appliance/engine/cert_list.c appliance/engine/crl.c \
               appliance/engine/bootstrap.c appliance/engine/outdir.c \
               appliance/engine/plan.c appliance/engine/plan_names.c appliance/engine/plan_ext.c \
               appliance/engine/ca_settings.c appliance/engine/ca_import.c \
               appliance/engine/ca_edit.c appliance/engine/ca_revoke.c \
               appliance/engine/resign.c appliance/engine/cert_import.c \
               appliance/engine/watchers.c appliance/engine/profiles.c appliance/engine/notify.c

UNIT_TESTS += appliance/engine/test_commit appliance/engine/test_status appliance/engine/test_select \
              appliance/engine/test_ca_cache appliance/engine/test_plan
appliance/engine/test_commit_SRCS := storage/test_util.c
appliance/engine/test_select_SRCS := storage/test_util.c
UNIT_TESTS += appliance/engine/test_notify
appliance/engine/test_notify_SRCS := storage/test_util.c

UNIT_TESTS += appliance/engine/test_engine_softhsm
appliance/engine/test_engine_softhsm_SRCS := tests/softhsm/fixture.c
