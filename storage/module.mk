# storage/: the LMDB layer owned by the engine process (read-only in the responder).
LIBS += storage
storage_SRCS := storage/store.c storage/mdb.c storage/schema.c storage/codec.c storage/ca.c \
                storage/serial.c storage/cert.c storage/revoke.c storage/crl.c \
                storage/audit.c storage/lookup.c storage/watchers.c storage/import.c \
                storage/query.c \
                $(OUT)/gen/storage/records.pb.c
PROTOS += storage/records.proto
EXT_LIBS += -llmdb
UNIT_TESTS += storage/test_store storage/test_records storage/test_audit storage/test_query \
              storage/test_import
storage/test_store_SRCS := storage/test_util.c
storage/test_records_SRCS := storage/test_util.c
storage/test_audit_SRCS := storage/test_util.c
storage/test_query_SRCS := storage/test_util.c
storage/test_import_SRCS := storage/test_util.c
