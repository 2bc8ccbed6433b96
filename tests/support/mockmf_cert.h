/* Test PKI for the Memfault stand-in, made at run time with the OpenSSL API: a CA, a server
 * certificate for 127.0.0.1/localhost and one for a host name no test connects to. */
#ifndef OTAGW_MOCKMF_CERT_H
#define OTAGW_MOCKMF_CERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

struct mockmf_pki {
	EVP_PKEY *ca_key;
	X509 *ca;
	EVP_PKEY *server_key; /* shared by both server certificates */
	X509 *good;           /* SAN IP:127.0.0.1, DNS:localhost */
	X509 *wrong;          /* SAN DNS:wrong.invalid */
};

/* Generates the whole set (P-256 keys, SHA-256 signatures, valid from an hour ago for a day).
 * Returns 0 or -ENOMEM/-EIO; on failure pki is left empty. */
int mockmf_pki_make(struct mockmf_pki *pki);

/* Writes the CA certificate as PEM to path. Returns 0 or a negative errno. */
int mockmf_pki_write_ca(const struct mockmf_pki *pki, const char *path);

void mockmf_pki_clear(struct mockmf_pki *pki);

#endif
