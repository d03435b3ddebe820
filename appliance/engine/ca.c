/*
 * CA reads: ca_list (paged by record id), ca_view (summary, settings, counts, CRL date),
 * ca_export (the certificate, or the chain as a PEM bundle). Creation is ca_init.c's.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "appliance/engine/engine_internal.h"

struct ca_page {
	struct engine *eng;
	struct store_txn *txn;
	p11ca_v1_CaListResponse *out;
	uint32_t after;
	size_t limit;
	bool more;
	enum p11ca_err err;
	struct p11ca_errmsg *em;
	struct engine_ca *scratch;
};

static int ca_page_visit(void *arg, const struct store_ca *rec)
{
	struct ca_page *p = arg;
	if (rec->id <= p->after)
		return 0;
	if (p->out->cas_count == p->limit) {
		p->more = true;
		return 1;
	}
	memcpy(&p->scratch->rec, rec, sizeof(*rec));
	p->err = engine_ca_parse(p->scratch, p->em);
	if (p->err == P11CA_OK)
		p->err = engine_ca_summary(p->eng, p->txn, p->scratch,
					   &p->out->cas[p->out->cas_count], p->em);
	engine_ca_clear(p->scratch);
	if (p->err != P11CA_OK)
		return 1;
	p->out->cas_count++;
	return 0;
}

enum p11ca_err engine_op_ca_list(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaListRequest *r = &req->op.ca_list;
	p11ca_v1_CaListResponse *out = &resp->result.ca_list;
	struct ca_page p = {
		.eng = c->eng,
		.out = out,
		.limit = r->limit == 0 || r->limit > ENGINE_PAGE_MAX ? ENGINE_PAGE_MAX : r->limit,
		.em = em,
	};
	if (r->page_token.size != 0 && r->page_token.size != 4)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the page token is not one this server made: start over");
	if (r->page_token.size == 4) {
		const uint8_t *t = r->page_token.bytes;
		p.after = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
	}
	if ((p.scratch = OPENSSL_zalloc(sizeof(*p.scratch))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = store_txn_begin(c->eng->st, STORE_TXN_READ, &p.txn, em);
	if (err == P11CA_OK)
		err = store_ca_list(p.txn, ca_page_visit, &p, em);
	if (err == P11CA_OK)
		err = p.err;
	if (err == P11CA_OK && p.more && out->cas_count > 0) {
		struct p11ca_errmsg ignored;
		if (store_ca_get_by_name(p.txn, out->cas[out->cas_count - 1].name, &p.scratch->rec,
					 &ignored) == P11CA_OK) {
			uint32_t id = p.scratch->rec.id;
			uint8_t *t = out->next_page_token.bytes;
			t[0] = (uint8_t)(id >> 24);
			t[1] = (uint8_t)(id >> 16);
			t[2] = (uint8_t)(id >> 8);
			t[3] = (uint8_t)id;
			out->next_page_token.size = 4;
		}
	}
	store_txn_abort(&p.txn);
	OPENSSL_free(p.scratch);
	return err;
}

struct ca_counts {
	uint64_t issued, revoked;
};

static int count_cert(void *arg, const struct store_cert *cert)
{
	struct ca_counts *n = arg;
	n->issued++;
	n->revoked += cert->revoked ? 1 : 0;
	return 0;
}

enum p11ca_err engine_op_ca_view(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	p11ca_v1_CaViewResponse *out = &resp->result.ca_view;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_txn *txn = NULL;
	struct ca_counts n = {0};
	struct store_crl crl;
	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, req->op.ca_view.ca, ca, em);
	if (err == P11CA_OK)
		err = engine_ca_summary(c->eng, txn, ca, &out->ca, em);
	/* A walk over the CA's certificates: fine for the thousands a view is for. */
	if (err == P11CA_OK)
		err = store_cert_list(txn, ca->rec.id, NULL, 0, count_cert, &n, NULL, em);
	if (err == P11CA_OK) {
		struct p11ca_errmsg ignored;
		if (store_crl_get(txn, ca->rec.id, STORE_CRL_SCOPE_FULL, &crl, &ignored) ==
		    P11CA_OK)
			out->crl_next_update = crl.next_update;
		out->has_ca = true;
		err = engine_ca_settings_get(&ca->rec, &out->settings, em);
		out->has_settings = err == P11CA_OK;
		out->certificates_issued = n.issued;
		out->certificates_revoked = n.revoked;
		memcpy(out->certificate_der.bytes, ca->rec.cert_der, ca->rec.cert_der_len);
		out->certificate_der.size = (pb_size_t)ca->rec.cert_der_len;
	}
	store_txn_abort(&txn);
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}

enum p11ca_err engine_op_ca_export(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaExportRequest *r = &req->op.ca_export;
	p11ca_v1_CaExportResponse *out = &resp->result.ca_export;
	struct engine_ca *ca = NULL;
	struct store_txn *txn = NULL;
	size_t len = 0;
	enum p11ca_err err;
	if (r->format > p11ca_v1_Format_FORMAT_DER)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown format %d", (int)r->format);
	if (r->bundle && r->format == p11ca_v1_Format_FORMAT_DER)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a bundle is PEM only: concatenated DER is not a file format");
	if ((ca = OPENSSL_zalloc(sizeof(*ca))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
	if (err == P11CA_OK && ca->rec.cert_der_len == 0)
		err = p11ca_fail(em, P11CA_E_POLICY, "CA %s has no certificate yet", ca->rec.name);
	if (err != P11CA_OK)
		goto out;
	if (r->format == p11ca_v1_Format_FORMAT_DER) {
		memcpy(out->data.bytes, ca->rec.cert_der, ca->rec.cert_der_len);
		len = ca->rec.cert_der_len;
		out->certificate_count = 1;
	} else if (r->bundle) {
		err = engine_chain_pem(txn, ca->rec.id, out->data.bytes, sizeof(out->data.bytes),
				       &len, &out->certificate_count, em);
	} else {
		err = x509_pem_append("CERTIFICATE", ca->rec.cert_der, ca->rec.cert_der_len,
				      out->data.bytes, sizeof(out->data.bytes), &len, em);
		out->certificate_count = 1;
	}
	out->data.size = (pb_size_t)len;
out:
	store_txn_abort(&txn);
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}
