/* Run-time test CA and server certificates for the Memfault stand-in (see mockmf_cert.h). Nothing
 * is read from disk, so the tests never depend on certificates that expire in the repository. */
#include "mockmf_cert.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static EVP_PKEY *
mockmf_pki_key(void)
{
	return EVP_EC_gen("P-256");
}

static int
mockmf_pki_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* Makes a certificate for key, named cn, signed by issuer_key (self-signed if issuer is NULL). */
static X509 *
mockmf_pki_cert(
    EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca, const char *san)
{
	X509 *cert = X509_new();
	X509_NAME *name;
	unsigned char serial[16];
	BIGNUM *bn = NULL;

	if (cert == NULL)
		return NULL;
	if (X509_set_version(cert, 2) != 1 || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL)
		goto fail;
	if (X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(cert), 86400) == NULL)
		goto fail;
	if (X509_set_pubkey(cert, key) != 1)
		goto fail;
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(
		name, "O", MBSTRING_ASC, (const unsigned char *)"otagw tests", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(
		name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) != 1)
		goto fail;
	if (X509_set_issuer_name(cert, issuer != NULL ? X509_get_subject_name(issuer) : name) != 1)
		goto fail;
	if (issuer == NULL)
		issuer = cert;
	if (mockmf_pki_ext(cert, issuer, NID_subject_key_identifier, "hash") < 0 ||
	    mockmf_pki_ext(cert, issuer, NID_authority_key_identifier, "keyid:always") < 0)
		goto fail;
	if (ca) {
		if (mockmf_pki_ext(cert, issuer, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
		    mockmf_pki_ext(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign") < 0)
			goto fail;
	} else {
		if (mockmf_pki_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
		    mockmf_pki_ext(cert, issuer, NID_key_usage, "critical,digitalSignature") < 0 ||
		    mockmf_pki_ext(cert, issuer, NID_ext_key_usage, "serverAuth") < 0 ||
		    mockmf_pki_ext(cert, issuer, NID_subject_alt_name, san) < 0)
			goto fail;
	}
	if (X509_sign(cert, issuer_key, EVP_sha256()) == 0)
		goto fail;
	BN_free(bn);
	return cert;
fail:
	BN_free(bn);
	X509_free(cert);
	return NULL;
}

int
mockmf_pki_make(struct mockmf_pki *pki)
{
	memset(pki, 0, sizeof(*pki));
	pki->ca_key = mockmf_pki_key();
	pki->server_key = mockmf_pki_key();
	if (pki->ca_key == NULL || pki->server_key == NULL)
		goto fail;
	pki->ca = mockmf_pki_cert(pki->ca_key, "otagw test CA", NULL, pki->ca_key, true, NULL);
	if (pki->ca == NULL)
		goto fail;
	pki->good = mockmf_pki_cert(pki->server_key, "127.0.0.1", pki->ca, pki->ca_key, false,
	    "IP:127.0.0.1,DNS:localhost");
	pki->wrong = mockmf_pki_cert(
	    pki->server_key, "wrong.invalid", pki->ca, pki->ca_key, false, "DNS:wrong.invalid");
	if (pki->good == NULL || pki->wrong == NULL)
		goto fail;
	return 0;
fail:
	mockmf_pki_clear(pki);
	return -EIO;
}

int
mockmf_pki_write_ca(const struct mockmf_pki *pki, const char *path)
{
	FILE *f = fopen(path, "w");
	int r = 0;

	if (f == NULL)
		return -errno;
	if (PEM_write_X509(f, pki->ca) != 1)
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

void
mockmf_pki_clear(struct mockmf_pki *pki)
{
	X509_free(pki->good);
	X509_free(pki->wrong);
	X509_free(pki->ca);
	EVP_PKEY_free(pki->server_key);
	EVP_PKEY_free(pki->ca_key);
	memset(pki, 0, sizeof(*pki));
}
