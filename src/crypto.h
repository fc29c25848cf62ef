/*
 * crypto.h — root key, billing-key encryption and random identifiers.
 */
#ifndef TOSS_CRYPTO_H
#define TOSS_CRYPTO_H

extern void toss_load_root_key(void);
extern void toss_require_root_key(void);
extern bytea *toss_encrypt_billing_key(const char *plaintext, int64 row_id);
extern char *toss_decrypt_billing_key(bytea *sealed, int64 row_id);
extern char *toss_random_uuid(void);
extern bytea *toss_hash_billing_key(const char *billing_key);
extern bytea *toss_hash_auth_key(const char *auth_key);
extern bool toss_root_key_status(const char **problem);

#endif
