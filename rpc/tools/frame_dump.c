/*
 * frame_dump: the C half of rpc/test_python_interop.sh.
 *
 *   frame_dump request     write two sample Request frames (nanopb) to stdout
 *   frame_dump response    read Response frames from stdin until a clean end of stream,
 *                          decode them with nanopb and print them in a stable text form
 *   frame_dump             self-check: the sample requests survive encode and decode
 *
 * Exit status 0 on success, 1 with a message on stderr otherwise.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kconfig.h"
#include "rpc/frame.h"
#include "rpc/op.h"

/* Non-ASCII on purpose: strings are UTF-8 on both sides. */
#define SAMPLE_SUBJECT "CN=Zo\xc3\xab's server,O=\xc3\x9cnicode Ltd"

static void sample_cert_sign(p11ca_v1_Request *r)
{
	static const char *const sans[] = {"DNS:www.example.net", "IP:192.0.2.7", "example.org"};
	memset(r, 0, sizeof(*r));
	r->api_version = RPC_API_VERSION;
	r->request_id = UINT64_C(0x8877665544332211); /* over 2^63: no signed confusion */
	r->which_op = p11ca_v1_Request_cert_sign_tag;
	p11ca_v1_CertSignRequest *s = &r->op.cert_sign;
	strcpy(s->ca, "issuing-1");
	strcpy(s->profile, "tls-server");
	strcpy(s->subject, SAMPLE_SUBJECT);
	for (size_t i = 0; i < 3; i++)
		strcpy(s->sans[i], sans[i]);
	s->sans_count = 3;
	s->expires_days = 397;
	s->csr.size = 300;
	for (size_t i = 0; i < s->csr.size; i++)
		s->csr.bytes[i] = (uint8_t)(i * 31 + 7);
}

static void sample_ca_init(p11ca_v1_Request *r)
{
	memset(r, 0, sizeof(*r));
	r->api_version = RPC_API_VERSION;
	r->request_id = 2;
	r->which_op = p11ca_v1_Request_ca_init_tag;
	p11ca_v1_CaInitRequest *c = &r->op.ca_init;
	strcpy(c->name, "issuing-1");
	strcpy(c->subject, "CN=Example Issuing CA 1,O=Example");
	strcpy(c->parent, "root");
	c->key_type = p11ca_v1_KeyType_KEY_TYPE_P384;
	c->signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384;
	/* Present and zero: "may sign only end-entity certificates", not "no constraint". */
	c->has_path_length = true;
	c->path_length = 0;
	c->expires_days = 3650;
}

static void (*const samples[])(p11ca_v1_Request *) = {sample_cert_sign, sample_ca_init};
#define N_SAMPLES (sizeof(samples) / sizeof(samples[0]))

static int fail(const struct p11ca_errmsg *em)
{
	fprintf(stderr, "frame_dump: %s\n", p11ca_errmsg_text(em));
	return 1;
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
	printf(" %s=", label);
	for (size_t i = 0; i < n; i++)
		printf("%02X", p[i]);
}

static void print_response(const p11ca_v1_Response *r)
{
	printf("response id=%" PRIu64 " status=%d message=\"%s\"", r->request_id,
	       r->has_status ? (int)r->status.code : -1, r->status.message);
	const struct rpc_op *op = rpc_op_find(r->which_result);
	printf(" result=%s\n", op != NULL ? op->name : "none");
	if (r->which_result == p11ca_v1_Response_cert_sign_tag) {
		const p11ca_v1_CertSignResponse *s = &r->result.cert_sign;
		print_hex(" serial", s->cert.serial.bytes, s->cert.serial.size);
		printf(" ca=%s profile=%s\n  subject=%s\n", s->cert.ca, s->cert.profile,
		       s->cert.subject);
		printf("  not_before=%" PRId64 " not_after=%" PRId64 " status=%d key_type=%d "
		       "revoked=%d\n",
		       s->cert.not_before, s->cert.not_after, (int)s->cert.status,
		       (int)s->cert.key_type, (int)s->cert.has_revocation);
		printf("  certificate_der=%u bytes", (unsigned)s->certificate_der.size);
		print_hex("head", s->certificate_der.bytes,
			  s->certificate_der.size < 4 ? s->certificate_der.size : 4);
		printf("\n");
	} else if (r->which_result == p11ca_v1_Response_ca_init_tag) {
		const p11ca_v1_CaSummary *c = &r->result.ca_init.ca;
		printf("  name=%s parent=%s key_type=%d signature_algorithm=%d\n", c->name,
		       c->parent, (int)c->key_type, (int)c->signature_algorithm);
		printf("  path_length=%s%" PRIu32 " status=%d revoked_at=%" PRId64 " reason=%d\n",
		       c->has_path_length ? "" : "absent/", c->path_length, (int)c->status,
		       c->revocation.revoked_at, (int)c->revocation.reason);
	}
}

static int write_requests(void)
{
	struct p11ca_errmsg em = {0};
	p11ca_v1_Request *req = calloc(1, sizeof(*req));
	int rc = 0;
	for (size_t i = 0; req != NULL && rc == 0 && i < N_SAMPLES; i++) {
		struct p11ca_buf *frame = NULL;
		samples[i](req);
		if (rpc_frame_request_encode(req, &frame, &em) != P11CA_OK ||
		    rpc_frame_write_fd(STDOUT_FILENO, frame, CONFIG_RPC_IO_TIMEOUT_MS, &em) !=
			    P11CA_OK)
			rc = fail(&em);
		p11ca_buf_free(&frame);
	}
	free(req);
	return req == NULL ? 1 : rc;
}

static int read_responses(void)
{
	struct p11ca_errmsg em = {0};
	p11ca_v1_Response *resp = calloc(1, sizeof(*resp));
	int rc = resp == NULL;
	while (rc == 0) {
		struct p11ca_buf *body = NULL;
		if (rpc_frame_read_fd(STDIN_FILENO, CONFIG_RPC_MAX_FRAME, CONFIG_RPC_IO_TIMEOUT_MS,
				      &body, &em) != P11CA_OK) {
			rc = fail(&em);
			break;
		}
		if (body == NULL)
			break; /* clean end of stream */
		if (rpc_frame_response_decode(body, resp, &em) != P11CA_OK)
			rc = fail(&em);
		else
			print_response(resp);
		p11ca_buf_free(&body);
	}
	free(resp);
	return rc;
}

/* Run bare by `make check`: each sample must come back identical. */
static int self_check(void)
{
	struct p11ca_errmsg em = {0};
	p11ca_v1_Request *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	int rc = a == NULL || b == NULL;
	for (size_t i = 0; rc == 0 && i < N_SAMPLES; i++) {
		struct p11ca_buf *frame = NULL;
		uint32_t len = 0;
		samples[i](a);
		memset(b, 0, sizeof(*b));
		if (rpc_frame_request_encode(a, &frame, &em) != P11CA_OK ||
		    p11ca_buf_get_u32(frame, &len) != P11CA_OK ||
		    rpc_frame_request_decode(frame, b, &em) != P11CA_OK)
			rc = fail(&em);
		else if (len != p11ca_buf_len(frame) || memcmp(a, b, sizeof(*a)) != 0) {
			fprintf(stderr, "frame_dump: sample %zu changed in transit\n", i);
			rc = 1;
		}
		p11ca_buf_free(&frame);
	}
	free(a);
	free(b);
	if (rc == 0)
		printf("frame_dump: %zu sample requests round-trip\n", N_SAMPLES);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 1)
		return self_check();
	if (argc == 2 && strcmp(argv[1], "request") == 0)
		return write_requests();
	if (argc == 2 && strcmp(argv[1], "response") == 0)
		return read_responses();
	fprintf(stderr, "usage: frame_dump [request|response]\n");
	return 2;
}
