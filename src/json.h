/*
 * json.h — reading Toss responses and writing request bodies.  The only
 * interface to cJSON.
 */
#ifndef TOSS_JSON_H
#define TOSS_JSON_H

#include "utils/jsonb.h"

typedef struct TossJson TossJson;	/* opaque parsed document */

typedef enum TossJsonKind
{
	TOSS_JSON_STRING,
	TOSS_JSON_INT64
} TossJsonKind;

typedef enum TossJsonType
{
	TOSS_JSON_ABSENT,
	TOSS_JSON_NULL,
	TOSS_JSON_TEXT,
	TOSS_JSON_INTEGER,			/* integral, |n| <= 2^53 */
	TOSS_JSON_NUMBER,			/* any other number */
	TOSS_JSON_BOOLEAN,
	TOSS_JSON_OBJECT,
	TOSS_JSON_ARRAY
} TossJsonType;

typedef struct TossJsonField
{
	const char *key;
	TossJsonKind kind;
	const char *str;			/* TOSS_JSON_STRING; NULL omits the field */
	int64		num;			/* TOSS_JSON_INT64 */
} TossJsonField;

extern TossJson *toss_json_parse(const char *text, size_t len);
extern TossJson *toss_json_from_jsonb(Jsonb *jb);
extern bool toss_json_is_object(TossJson *doc);
extern bool toss_json_is_array(TossJson *doc);
extern char *toss_json_text(TossJson *doc, const char *path);
extern bool toss_json_int64(TossJson *doc, const char *path, int64 *out);
extern bool toss_json_bool(TossJson *doc, const char *path, bool *out);
extern char *toss_json_raw(TossJson *doc, const char *path);
extern char *toss_json_array_item(TossJson *doc, int i);
extern char *toss_json_array_item_text(TossJson *doc, int i, const char *key);
extern char *toss_json_build(const TossJsonField *fields, int nfields);
extern void toss_json_wipe(TossJson *doc);
extern TossJsonType toss_json_type(TossJson *doc, const char *path);
extern int	toss_json_array_size(TossJson *doc, const char *path);
extern const char *toss_json_peek_text(TossJson *doc, const char *path);
extern bool toss_json_peek_int64(TossJson *doc, const char *path, int64 *out);

#endif
