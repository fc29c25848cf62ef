/*
 * crypto.c — the root key and AES-256-GCM sealing of billing keys.
 *
 * The root key is read once, in the postmaster, while shared_preload_libraries
 * is processed (toss_load_root_key); its file must pass the same ownership
 * and mode checks as ssl_key_file.  Every backend and background worker
 * inherits the key through fork.  It lives in one private mmap'd page that
 * is excluded from core dumps (MADV_DONTDUMP, which fork keeps) and is never
 * copied elsewhere.  Memory locks are not inherited across fork, so the
 * page is mlock'ed (best effort) in the postmaster and again in each process
 * the first time that process uses the key.  A per-purpose subkey is derived
 * with HMAC-SHA256 on each use and wiped afterwards.
 *
 * Sealed format (bytea): version byte (1) || 12-byte nonce || ciphertext ||
 * 16-byte tag.  The associated data binds the sealed value to its row:
 * "toss_billing.billing_keys:<id>", so a ciphertext moved to another row does
 * not decrypt.  Plaintext results are palloc'd; callers wipe them.
 */
#include "postgres.h"

#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "crypto.h"
#include "errors.h"
#include "miscadmin.h"
#include "settings.h"
#include "utils/builtins.h"

#define ROOT_KEY_BYTES 32
#define SEAL_VERSION 1
#define NONCE_BYTES 12
#define TAG_BYTES 16

static unsigned char *root_key = NULL;	/* one page, or NULL */
static bool root_key_loaded = false;
static pid_t root_key_locked_by = 0;	/* the process that last mlock'ed it */
static const char *root_key_problem = NULL; /* static string, for errdetail */

static const char subkey_info[] = "toss_billing billing key v1";
static const char lookup_info[] = "toss_billing billing key lookup v1";
static const char auth_key_info[] = "toss_billing auth key lookup v1";

static void
read_root_key_file(unsigned char *out)
{
	FILE	   *f;
	char		buf[130];
	size_t		n;

	/* plain stdio: this runs in the postmaster, before fd.c is set up */
	f = fopen(toss_root_key_file, "r");
	if (f == NULL)
	{
		root_key_problem = "The file named by toss_billing.root_key_file could not be opened.";
		return;
	}
	root_key_problem = toss_key_file_problem(fileno(f));
	if (root_key_problem != NULL)
	{
		fclose(f);
		return;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (n != ROOT_KEY_BYTES * 2 ||
		strspn(buf, "0123456789abcdefABCDEF") != n)
		root_key_problem = "The file named by toss_billing.root_key_file must hold exactly 64 hexadecimal digits.";
	else
	{
		hex_decode(buf, n, (char *) out);
		root_key_loaded = true;
	}
	explicit_bzero(buf, sizeof(buf));
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
toss_load_root_key(void)
{
	void	   *page;

	if (toss_root_key_file == NULL || toss_root_key_file[0] == '\0')
	{
		root_key_problem = "toss_billing.root_key_file is not set.";
		return;
	}
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
	{
		root_key_problem = "Memory for the root key could not be mapped.";
		return;
	}
	(void) mlock(page, 4096);
	root_key_locked_by = getpid();
#ifdef MADV_DONTDUMP
	(void) madvise(page, 4096, MADV_DONTDUMP);
#endif
	root_key = page;
	read_root_key_file(root_key);
	if (!root_key_loaded)
		ereport(WARNING,
				(errmsg("toss_billing could not load its root key; billing keys cannot be stored or used"),
				 errdetail_internal("%s", root_key_problem),
				 errhint("Fix the file named by toss_billing.root_key_file (64 hex digits, owned by the server's OS user with mode 0600) and restart the server.")));
}

void
toss_require_root_key(void)
{
	if (root_key_loaded)
	{
		if (root_key_locked_by != getpid())
		{
			(void) mlock(root_key, 4096);
			root_key_locked_by = getpid();
		}
		return;
	}
	if (!process_shared_preload_libraries_done || root_key_problem == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_CONFIGURATION),
				 errmsg("toss_billing was not loaded at server start"),
				 errdetail("The root key that encrypts billing keys is read only while shared_preload_libraries is processed."),
				 errhint("Add toss_billing to shared_preload_libraries, set toss_billing.root_key_file and restart the server.")));
	ereport(ERROR,
			(errcode(ERRCODE_TOSS_CONFIGURATION),
			 errmsg("the toss_billing root key is not loaded"),
			 errdetail_internal("%s", root_key_problem),
			 errhint("Fix the file named by toss_billing.root_key_file (64 hex digits, owned by the server's OS user with mode 0600) and restart the server.")));
}

/* A per-purpose key: HMAC-SHA256(root key, info).  Callers wipe it. */
static void
derive_key(const char *info, unsigned char *subkey)
{
	unsigned int len = ROOT_KEY_BYTES;

	toss_require_root_key();
	if (HMAC(EVP_sha256(), root_key, ROOT_KEY_BYTES,
			 (const unsigned char *) info, strlen(info),
			 subkey, &len) == NULL || len != ROOT_KEY_BYTES)
		elog(ERROR, "could not derive a toss_billing subkey");
}

static void
derive_subkey(unsigned char *subkey)
{
	derive_key(subkey_info, subkey);
}

/*
 * A keyed hash of a billing key (HMAC-SHA256 under a subkey of the root
 * key): lets a webhook's billing key find its row without storing or
 * decrypting anything, and reveals nothing without the root key.
 */
static bytea *
keyed_hash(const char *info, const char *value)
{
	unsigned char subkey[ROOT_KEY_BYTES];
	bytea	   *hash = palloc(VARHDRSZ + 32);
	unsigned int len = 32;
	unsigned char *ok;

	derive_key(info, subkey);
	ok = HMAC(EVP_sha256(), subkey, ROOT_KEY_BYTES, (const unsigned char *) value,
			  strlen(value), (unsigned char *) VARDATA(hash), &len);
	explicit_bzero(subkey, sizeof(subkey));
	if (ok == NULL || len != 32)
		elog(ERROR, "could not compute a keyed hash");
	SET_VARSIZE(hash, VARHDRSZ + 32);
	return hash;
}

bytea *
toss_hash_billing_key(const char *billing_key)
{
	return keyed_hash(lookup_info, billing_key);
}

/*
 * A keyed hash of an authKey (under a subkey of its own), stored with the
 * billing key it was exchanged for: a successUrl loaded again with the same
 * authKey finds the key already issued instead of asking Toss, which has
 * forgotten the authKey by then.
 */
bytea *
toss_hash_auth_key(const char *auth_key)
{
	return keyed_hash(auth_key_info, auth_key);
}

/*
 * Whether the root key is loaded in this process; if not, *problem says
 * why (a static sentence, never the key or the file's content).
 */
bool
toss_root_key_status(const char **problem)
{
	if (root_key_loaded)
	{
		*problem = NULL;
		return true;
	}
	if (!process_shared_preload_libraries_done || root_key_problem == NULL)
		*problem = "toss_billing was not loaded at server start (shared_preload_libraries), so the root key was never read.";
	else
		*problem = root_key_problem;
	return false;
}

static char *
associated_data(int64 row_id)
{
	return psprintf("toss_billing.billing_keys:" INT64_FORMAT, row_id);
}

/*
 * Run one AES-256-GCM operation.  Returns false on any OpenSSL failure
 * (including a tag mismatch on decryption); never raises while the cipher
 * context is live, so it cannot leak.
 */
static bool
gcm_run(bool encrypt, const unsigned char *key, const unsigned char *nonce,
		const char *aad, const unsigned char *in, int inlen,
		unsigned char *out, unsigned char *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			len = 0;
	bool		ok;

	if (ctx == NULL)
		return false;
	ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt ? 1 : 0) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) == 1 &&
		EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, -1) == 1 &&
		EVP_CipherUpdate(ctx, NULL, &len, (const unsigned char *) aad, strlen(aad)) == 1 &&
		EVP_CipherUpdate(ctx, out, &len, in, inlen) == 1;
	if (ok && !encrypt)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) == 1;
	if (ok)
		ok = EVP_CipherFinal_ex(ctx, out + len, &len) == 1;
	if (ok && encrypt)
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

bytea *
toss_encrypt_billing_key(const char *plaintext, int64 row_id)
{
	unsigned char subkey[ROOT_KEY_BYTES];
	int			ptlen = strlen(plaintext);
	int			total = 1 + NONCE_BYTES + ptlen + TAG_BYTES;
	bytea	   *sealed = palloc(VARHDRSZ + total);
	unsigned char *p = (unsigned char *) VARDATA(sealed);
	char	   *aad = associated_data(row_id);
	bool		ok;

	SET_VARSIZE(sealed, VARHDRSZ + total);
	p[0] = SEAL_VERSION;
	if (!pg_strong_random(p + 1, NONCE_BYTES))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random nonce")));
	derive_subkey(subkey);
	ok = gcm_run(true, subkey, p + 1, aad, (const unsigned char *) plaintext, ptlen,
				 p + 1 + NONCE_BYTES, p + 1 + NONCE_BYTES + ptlen);
	explicit_bzero(subkey, sizeof(subkey));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encrypt a billing key")));
	return sealed;
}

char *
toss_decrypt_billing_key(bytea *sealed, int64 row_id)
{
	unsigned char subkey[ROOT_KEY_BYTES];
	int			total = VARSIZE_ANY_EXHDR(sealed);
	unsigned char *p = (unsigned char *) VARDATA_ANY(sealed);
	int			ctlen = total - 1 - NONCE_BYTES - TAG_BYTES;
	char	   *plain;
	char	   *aad = associated_data(row_id);
	bool		ok;

	if (ctlen <= 0 || p[0] != SEAL_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored billing key " INT64_FORMAT " is not in a known sealed format", row_id)));
	plain = palloc(ctlen + 1);
	derive_subkey(subkey);
	ok = gcm_run(false, subkey, p + 1, aad, p + 1 + NONCE_BYTES, ctlen,
				 (unsigned char *) plain, p + 1 + NONCE_BYTES + ctlen);
	explicit_bzero(subkey, sizeof(subkey));
	if (!ok)
	{
		explicit_bzero(plain, ctlen + 1);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored billing key " INT64_FORMAT " could not be decrypted", row_id),
				 errdetail("The ciphertext does not authenticate under the loaded root key for this row."),
				 errhint("Check that toss_billing.root_key_file names the key the data was written with.")));
	}
	plain[ctlen] = '\0';
	return plain;
}

/* A random (version 4) UUID as text, for idempotency keys and order ids. */
char *
toss_random_uuid(void)
{
	unsigned char b[16];

	if (!pg_strong_random(b, sizeof(b)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random identifier")));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	return psprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
					b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
					b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}
