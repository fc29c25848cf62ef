/*
 * json.c — the only file that includes cJSON.
 *
 * Memory: a parsed document is owned by the memory context that was current
 * when toss_json_parse() was called; a reset callback on that context calls
 * cJSON_Delete, so an ERROR anywhere later cannot leak the tree.  cJSON keeps
 * using malloc.  Every value handed out is copied into palloc'd memory.
 *
 * Numbers: cJSON holds numbers as doubles.  toss_json_int64 accepts only
 * integral values of magnitude at most 2^53, where a double is exact, and
 * raises otherwise; amounts are never handled as fractions.  Request bodies
 * write int64 values from their decimal text, never through a double.
 */
#include "postgres.h"

#include <math.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

StaticAssertDecl(CJSON_VERSION_MAJOR > 1 ||
				 (CJSON_VERSION_MAJOR == 1 && CJSON_VERSION_MINOR >= 7),
				 "toss_billing needs cJSON 1.7 or later");

/*
 * A document is either parsed by cJSON (an answer as received) or a jsonb
 * value read in place (toss_json_from_jsonb: what SQL hands over), read
 * through the same functions with the same meaning: a key's last value, as
 * jsonb keeps it; numbers read as doubles, as cJSON reads them.
 */
struct TossJson
{
	cJSON	   *root;
	JsonbContainer *jb;			/* the jsonb form, or NULL */
	MemoryContextCallback cb;
};

static void
free_doc(void *arg)
{
	TossJson   *doc = (TossJson *) arg;

	if (doc->root)
		cJSON_Delete(doc->root);
	doc->root = NULL;
}

static void
wipe_node(cJSON *n)
{
	for (; n != NULL; n = n->next)
	{
		if (n->valuestring)
			explicit_bzero(n->valuestring, strlen(n->valuestring));
		if (n->string)
			explicit_bzero(n->string, strlen(n->string));
		wipe_node(n->child);
	}
}

/* Overwrite every string of a parsed document (it may hold a billing key). */
void
toss_json_wipe(TossJson *doc)
{
	if (doc != NULL && doc->root != NULL)
		wipe_node(doc->root);
}

/* Returns NULL if the text is not valid JSON. */
TossJson *
toss_json_parse(const char *text, size_t len)
{
	TossJson   *doc = palloc0(sizeof(TossJson));

	doc->cb.func = free_doc;
	doc->cb.arg = doc;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &doc->cb);
	doc->root = cJSON_ParseWithLength(text, len);
	if (doc->root == NULL)
		return NULL;
	return doc;
}

/* A jsonb value, read in place (not copied, not parsed again). */
TossJson *
toss_json_from_jsonb(Jsonb *jb)
{
	TossJson   *doc = palloc0(sizeof(TossJson));

	doc->jb = &jb->root;
	return doc;
}

/* Follow a path in a jsonb document, as lookup() does in a cJSON one. */
static bool
jb_lookup(JsonbContainer *root, const char *path, JsonbValue *out)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = root;
	v.val.binary.len = 0;
	if (JsonContainerIsScalar(root))
	{
		JsonbValue *scalar = getIthJsonbValueFromContainer(root, 0);

		if (scalar == NULL)
			return false;
		v = *scalar;
	}
	while (*path)
	{
		size_t		n = strcspn(path, ".");
		JsonbContainer *c;

		if (v.type != jbvBinary || n >= 128)
			return false;
		c = v.val.binary.data;
		if (JsonContainerIsObject(c))
		{
			if (getKeyJsonValueFromContainer(c, path, (int) n, &v) == NULL)
				return false;
		}
		else if (n > 0 && n < 9 && strspn(path, "0123456789") >= n)
		{
			char		digits[10];
			JsonbValue *item;

			memcpy(digits, path, n);
			digits[n] = '\0';
			item = getIthJsonbValueFromContainer(c, (uint32) atoi(digits));
			if (item == NULL)
				return false;
			v = *item;
		}
		else
			return false;
		path += n;
		if (*path == '.')
			path++;
	}
	*out = v;
	return true;
}

/* A jsonb number as cJSON would read its text: a double. */
static double
jb_double(JsonbValue *v)
{
	char	   *digits = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	double		d = strtod(digits, NULL);

	pfree(digits);
	return d;
}

static TossJsonType
jb_type(TossJson *doc, const char *path, JsonbValue *v)
{
	if (!jb_lookup(doc->jb, path, v))
		return TOSS_JSON_ABSENT;
	switch (v->type)
	{
		case jbvNull:
			return TOSS_JSON_NULL;
		case jbvString:
			return TOSS_JSON_TEXT;
		case jbvNumeric:
			{
				double		d = jb_double(v);

				return (isfinite(d) && floor(d) == d && fabs(d) <= 9007199254740992.0) ?
					TOSS_JSON_INTEGER : TOSS_JSON_NUMBER;
			}
		case jbvBool:
			return TOSS_JSON_BOOLEAN;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? TOSS_JSON_OBJECT : TOSS_JSON_ARRAY;
		default:
			return TOSS_JSON_NUMBER;
	}
}

bool
toss_json_is_object(TossJson *doc)
{
	if (doc != NULL && doc->jb)
		return JsonContainerIsObject(doc->jb) && !JsonContainerIsScalar(doc->jb);
	return doc != NULL && cJSON_IsObject(doc->root);
}

bool
toss_json_is_array(TossJson *doc)
{
	if (doc != NULL && doc->jb)
		return !JsonContainerIsObject(doc->jb) && !JsonContainerIsScalar(doc->jb);
	return doc != NULL && cJSON_IsArray(doc->root);
}

/*
 * Follow a dot-separated path: object keys, or decimal indexes into arrays
 * ("cancels.0.cancelAmount").  NULL if absent.
 */
static cJSON *
lookup(TossJson *doc, const char *path)
{
	cJSON	   *node = doc->root;
	char		key[128];

	while (node != NULL && *path)
	{
		size_t		n = strcspn(path, ".");

		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		if (cJSON_IsObject(node))
			node = cJSON_GetObjectItemCaseSensitive(node, key);
		else if (cJSON_IsArray(node) && n > 0 && strspn(key, "0123456789") == n && n < 9)
			node = cJSON_GetArrayItem(node, atoi(key));
		else
			return NULL;
		path += n;
		if (*path == '.')
			path++;
	}
	return node;
}

/* What the value at path is, without raising. */
TossJsonType
toss_json_type(TossJson *doc, const char *path)
{
	cJSON	   *n;

	if (doc && doc->jb)
	{
		JsonbValue	v;

		return jb_type(doc, path, &v);
	}
	n = doc ? lookup(doc, path) : NULL;

	if (n == NULL)
		return TOSS_JSON_ABSENT;
	if (cJSON_IsNull(n))
		return TOSS_JSON_NULL;
	if (cJSON_IsString(n))
		return TOSS_JSON_TEXT;
	if (cJSON_IsNumber(n))
	{
		double		d = n->valuedouble;

		return (isfinite(d) && floor(d) == d && fabs(d) <= 9007199254740992.0) ?
			TOSS_JSON_INTEGER : TOSS_JSON_NUMBER;
	}
	if (cJSON_IsBool(n))
		return TOSS_JSON_BOOLEAN;
	if (cJSON_IsObject(n))
		return TOSS_JSON_OBJECT;
	if (cJSON_IsArray(n))
		return TOSS_JSON_ARRAY;
	return TOSS_JSON_NUMBER;
}

/* The number of items of the array at path (0 if it is not an array). */
int
toss_json_array_size(TossJson *doc, const char *path)
{
	cJSON	   *n;

	if (doc && doc->jb)
	{
		JsonbValue	v;

		if (jb_type(doc, path, &v) != TOSS_JSON_ARRAY)
			return 0;
		return (int) JsonContainerSize(v.val.binary.data);
	}
	n = doc ? lookup(doc, path) : NULL;

	return cJSON_IsArray(n) ? cJSON_GetArraySize(n) : 0;
}

/* The string at path, unless it is absent or not a string: NULL then.  Never raises. */
const char *
toss_json_peek_text(TossJson *doc, const char *path)
{
	cJSON	   *n;

	if (doc && doc->jb)
	{
		JsonbValue	v;

		if (!jb_lookup(doc->jb, path, &v) || v.type != jbvString)
			return NULL;
		return pnstrdup(v.val.string.val, v.val.string.len);
	}
	n = doc ? lookup(doc, path) : NULL;

	return cJSON_IsString(n) ? n->valuestring : NULL;
}

/* The integer at path, if it is one.  Never raises. */
bool
toss_json_peek_int64(TossJson *doc, const char *path, int64 *out)
{
	cJSON	   *n;

	if (doc && doc->jb)
	{
		JsonbValue	v;

		if (jb_type(doc, path, &v) != TOSS_JSON_INTEGER)
			return false;
		*out = (int64) jb_double(&v);
		return true;
	}
	n = doc ? lookup(doc, path) : NULL;

	if (toss_json_type(doc, path) != TOSS_JSON_INTEGER)
		return false;
	*out = (int64) n->valuedouble;
	return true;
}

static void
wrong_type(const char *path, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("unexpected toss response: field \"%s\" is not %s", path, expected)));
}

/* A string field as palloc'd text; NULL if absent or null. */
char *
toss_json_text(TossJson *doc, const char *path)
{
	cJSON	   *n = lookup(doc, path);

	if (n == NULL || cJSON_IsNull(n))
		return NULL;
	if (!cJSON_IsString(n))
		wrong_type(path, "a string");
	return pstrdup(n->valuestring);
}

bool
toss_json_int64(TossJson *doc, const char *path, int64 *out)
{
	cJSON	   *n = lookup(doc, path);
	double		d;

	if (n == NULL || cJSON_IsNull(n))
		return false;
	if (!cJSON_IsNumber(n))
		wrong_type(path, "a number");
	d = n->valuedouble;
	if (!isfinite(d) || floor(d) != d || fabs(d) > 9007199254740992.0)
		wrong_type(path, "an integer amount");
	*out = (int64) d;
	return true;
}

bool
toss_json_bool(TossJson *doc, const char *path, bool *out)
{
	cJSON	   *n = lookup(doc, path);

	if (n == NULL || cJSON_IsNull(n))
		return false;
	if (!cJSON_IsBool(n))
		wrong_type(path, "a boolean");
	*out = cJSON_IsTrue(n);
	return true;
}

/* Copy cJSON-printed text into palloc'd memory and free it, on every path. */
static char *
copy_printed(char *printed)
{
	char	   *volatile copy = NULL;

	if (printed == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory printing JSON")));
	PG_TRY();
	{
		copy = pstrdup(printed);
	}
	PG_FINALLY();
	{
		cJSON_free(printed);
	}
	PG_END_TRY();
	return copy;
}

/* Any value re-serialized as compact JSON text; NULL if absent or null. */
char *
toss_json_raw(TossJson *doc, const char *path)
{
	cJSON	   *n = lookup(doc, path);
	char	   *printed;

	if (n == NULL || cJSON_IsNull(n))
		return NULL;
	printed = cJSON_PrintUnformatted(n);
	return copy_printed(printed);
}

/*
 * Build a JSON object from fields.  The cJSON tree is deleted before
 * anything that can raise runs.
 */
char *
toss_json_build(const TossJsonField *fields, int nfields)
{
	cJSON	   *obj = cJSON_CreateObject();
	bool		ok = obj != NULL;
	char	   *printed = NULL;

	for (int i = 0; ok && i < nfields; i++)
	{
		const TossJsonField *f = &fields[i];
		cJSON	   *item = NULL;

		if (f->kind == TOSS_JSON_STRING)
		{
			if (f->str == NULL)
				continue;
			item = cJSON_CreateString(f->str);
		}
		else
		{
			char		digits[32];

			snprintf(digits, sizeof(digits), INT64_FORMAT, f->num);
			item = cJSON_CreateRaw(digits);
		}
		ok = item != NULL && cJSON_AddItemToObject(obj, f->key, item);
		if (!ok && item)
			cJSON_Delete(item);
	}
	if (ok)
		printed = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return copy_printed(printed);
}

/* Item i of a top-level array, as JSON text; NULL past the end or if not an array. */
char *
toss_json_array_item(TossJson *doc, int i)
{
	cJSON	   *item;

	if (doc == NULL || !cJSON_IsArray(doc->root))
		return NULL;
	item = cJSON_GetArrayItem(doc->root, i);
	if (item == NULL)
		return NULL;
	return copy_printed(cJSON_PrintUnformatted(item));
}

/* A string field of item i of a top-level array; NULL if absent. */
char *
toss_json_array_item_text(TossJson *doc, int i, const char *key)
{
	cJSON	   *item;
	cJSON	   *field;

	if (doc == NULL || !cJSON_IsArray(doc->root))
		return NULL;
	item = cJSON_GetArrayItem(doc->root, i);
	field = item ? cJSON_GetObjectItemCaseSensitive(item, key) : NULL;
	return cJSON_IsString(field) ? pstrdup(field->valuestring) : NULL;
}
