/*
 * json.h — reading Toss responses and writing request bodies.  The only
 * interface to cJSON.
 */
#ifndef TOSS_JSON_H
#define TOSS_JSON_H

typedef struct TossJson TossJson;	/* opaque parsed document */

typedef enum TossJsonKind
{
	TOSS_JSON_STRING,
	TOSS_JSON_INT64
} TossJsonKind;

typedef struct TossJsonField
{
	const char *key;
	TossJsonKind kind;
	const char *str;			/* TOSS_JSON_STRING; NULL omits the field */
	int64		num;			/* TOSS_JSON_INT64 */
} TossJsonField;

extern TossJson *toss_json_parse(const char *text, size_t len);
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

#endif
