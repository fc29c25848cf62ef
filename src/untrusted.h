/*
 * untrusted.h — checks and scrubbing of an upstream answer before it is
 * read or stored.
 */
#ifndef TOSS_UNTRUSTED_H
#define TOSS_UNTRUSTED_H

/* No Toss answer comes near these; a parse of one costs a bounded multiple of its size. */
#define TOSS_JSON_MAX_DEPTH 64
#define TOSS_JSON_MAX_VALUES 200000

extern const char *toss_answer_problem(const char *body, size_t len);
extern char *toss_scrub(const char *body, size_t len, const char *billing_key,
						const char *authorization, size_t *outlen);

#endif
