/*
 * Named databases, the schema version in meta["schema"], and migrations.
 *
 * Everything done at open happens in one write transaction: creating the databases,
 * every migration step, the new version and their audit records commit together or not
 * at all, so a crash during a migration leaves the old schema intact.
 */
#include "storage/store_internal.h"

#include <stdio.h>
#include <string.h>

const char *const store_db_names[STORE_DB_COUNT] = {
	[STORE_DB_META] = "meta",	[STORE_DB_CAS] = "cas",
	[STORE_DB_CERTS] = "certs",	[STORE_DB_SERIALS] = "serials",
	[STORE_DB_INTENTS] = "intents", [STORE_DB_BY_EXPIRY] = "by_expiry",
	[STORE_DB_REVOKED] = "revoked", [STORE_DB_CRLS] = "crls",
	[STORE_DB_AUDIT] = "audit",
};

/*
 * This binary's schema. Schema 1 is the first, so there is no step yet. A change of
 * layout adds a function migrating version N to N+1 and a row
 *     {N, "what changed", migrate_N},
 * and bumps STORE_SCHEMA_VERSION; steps are never removed while a release may still meet
 * a database of version N.
 */
static const struct store_schema builtin_schema = {
	.version = STORE_SCHEMA_VERSION,
	.steps = NULL,
	.n_steps = 0,
	.arg = NULL,
};

#define STORE_ACTOR "p11ca-storage"

static enum p11ca_err dbs_open(struct store_txn *txn, struct p11ca_errmsg *em)
{
	struct store *st = txn->st;
	for (int i = 0; i < STORE_DB_COUNT; i++) {
		int rc = mdb_dbi_open(txn->mtxn, store_db_names[i], st->read_only ? 0 : MDB_CREATE,
				      &st->dbi[i]);
		if (rc == MDB_NOTFOUND)
			return p11ca_fail(em, P11CA_E_STORAGE_VERSION,
					  "database %s has no '%s' table: it is not initialised; "
					  "start the p11cad engine once to create it",
					  st->path, store_db_names[i]);
		P11CA_GUARD(store_mdb_err(txn, rc, store_db_names[i], em));
	}
	return P11CA_OK;
}

static enum p11ca_err meta_put(struct store_txn *txn, uint32_t version, int64_t created,
			       struct p11ca_errmsg *em)
{
	p11ca_storage_v1_Meta meta = {
		.format = STORE_RECORD_FORMAT,
		.schema_version = version,
		.created = created,
	};
	return store_rec_put(txn, STORE_DB_META, STORE_META_SCHEMA, strlen(STORE_META_SCHEMA),
			     p11ca_storage_v1_Meta_fields, &meta, em);
}

static enum p11ca_err schema_create(struct store_txn *txn, const struct store_schema *schema,
				    struct p11ca_errmsg *em)
{
	struct store *st = txn->st;
	MDB_stat ms;
	/* No meta but audit records: the meta record was lost, this is not a new database. */
	P11CA_GUARD(
		store_mdb_err(txn, mdb_stat(txn->mtxn, st->dbi[STORE_DB_AUDIT], &ms), "audit", em));
	if (ms.ms_entries != 0)
		return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
				  "database %s has audit records but no schema record: restore "
				  "it from a backup",
				  st->path);
	if (st->read_only)
		return p11ca_fail(em, P11CA_E_STORAGE_VERSION,
				  "database %s is not initialised: start the p11cad engine first",
				  st->path);
	P11CA_GUARD(meta_put(txn, schema->version, store_now(), em));
	char details[64];
	snprintf(details, sizeof(details), "schema %u", schema->version);
	P11CA_GUARD(store_audit_append(txn, "storage.create", STORE_ACTOR, st->path, details, NULL,
				       em));
	p11ca_logf(st->logger, LOG_NOTICE, "storage %s: created (schema %u)", st->path,
		   schema->version);
	return P11CA_OK;
}

static const struct store_migration *step_find(const struct store_schema *schema, uint32_t from)
{
	for (size_t i = 0; i < schema->n_steps; i++)
		if (schema->steps[i].from_version == from && schema->steps[i].apply != NULL)
			return &schema->steps[i];
	return NULL;
}

static enum p11ca_err schema_migrate(struct store_txn *txn, const struct store_schema *schema,
				     const p11ca_storage_v1_Meta *meta, struct p11ca_errmsg *em)
{
	struct store *st = txn->st;
	uint32_t from = meta->schema_version;
	if (st->read_only)
		return p11ca_fail(em, P11CA_E_STORAGE_VERSION,
				  "database %s has schema %u and this p11ca expects %u: start the "
				  "p11cad engine first to migrate it",
				  st->path, from, schema->version);

	/* Find every step before running any, so a gap is reported without side effects. */
	for (uint32_t v = from; v < schema->version; v++)
		if (step_find(schema, v) == NULL)
			return p11ca_fail(em, P11CA_E_STORAGE_VERSION,
					  "database %s has schema %u and this p11ca cannot migrate "
					  "%u to %u: upgrade through an intermediate release",
					  st->path, from, v, v + 1);
	for (uint32_t v = from; v < schema->version; v++) {
		const struct store_migration *step = step_find(schema, v);
		p11ca_logf(st->logger, LOG_NOTICE, "storage %s: migrating schema %u to %u: %s",
			   st->path, v, v + 1, step->what ? step->what : "");
		enum p11ca_err err = step->apply(txn, schema->arg, em);
		if (err != P11CA_OK)
			return p11ca_fail(em, P11CA_E_STORAGE_VERSION,
					  "database %s: migration from schema %u to %u failed; the "
					  "database is left at schema %u",
					  st->path, v, v + 1, from);
	}
	P11CA_GUARD(meta_put(txn, schema->version, meta->created, em));
	/* Audited after the meta change so that the record describes a finished migration. */
	for (uint32_t v = from; v < schema->version; v++) {
		char details[STORE_AUDIT_DETAILS_MAX + 1];
		const char *what = step_find(schema, v)->what;
		snprintf(details, sizeof(details), "schema %u -> %u: %s", v, v + 1,
			 what ? what : "");
		P11CA_GUARD(store_audit_append(txn, "storage.migrate", STORE_ACTOR, st->path,
					       details, NULL, em));
	}
	return P11CA_OK;
}

static enum p11ca_err schema_check(struct store_txn *txn, const struct store_schema *schema,
				   struct p11ca_errmsg *em)
{
	struct store *st = txn->st;
	p11ca_storage_v1_Meta meta = p11ca_storage_v1_Meta_init_zero;
	enum p11ca_err err =
		store_rec_get(txn, STORE_DB_META, STORE_META_SCHEMA, strlen(STORE_META_SCHEMA),
			      p11ca_storage_v1_Meta_fields, &meta, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		return schema_create(txn, schema, em);
	P11CA_GUARD(err);
	P11CA_GUARD(store_rec_format(meta.format, STORE_DB_META, em));
	if (meta.schema_version == 0)
		return store_rec_corrupt(STORE_DB_META, "schema version 0", em);
	if (meta.schema_version > schema->version)
		return p11ca_fail(em, P11CA_E_STORAGE_VERSION,
				  "database %s has schema %u, newer than the %u this p11ca "
				  "understands: run the newer p11ca, or restore a backup made by "
				  "this version",
				  st->path, meta.schema_version, schema->version);
	if (meta.schema_version < schema->version)
		return schema_migrate(txn, schema, &meta, em);
	return P11CA_OK;
}

enum p11ca_err store_schema_open(struct store *st, const struct store_schema *schema,
				 struct p11ca_errmsg *em)
{
	if (schema == NULL)
		schema = &builtin_schema;
	if (schema->version == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "schema version 0");

	struct store_txn *txn = NULL;
	P11CA_GUARD(store_txn_begin_internal(st, !st->read_only, &txn, em));
	enum p11ca_err err = dbs_open(txn, em);
	if (err == P11CA_OK)
		err = schema_check(txn, schema, em);
	if (err != P11CA_OK) {
		store_txn_abort(&txn);
		return err;
	}
	/* Committing also keeps the database handles for the environment's lifetime (a read
	 * transaction's commit is what LMDB asks for that). */
	P11CA_GUARD(store_txn_commit(&txn, em));
	st->schema_version = schema->version;
	return P11CA_OK;
}
