/*-------------------------------------------------------------------------
 *
 * schema.c
 *	  JSON Schemas of topics: compiling a schema into a tree of nodes,
 *	  validating events against it, and the per-backend cache of compiled
 *	  schemas.
 *
 * A schema is compiled once per topic version: every keyword is checked
 * (anything outside the supported subset of draft 2020-12 is refused, never
 * ignored), patterns are compiled with PostgreSQL's regex engine, $refs are
 * resolved to nodes and cycles of $ref that would validate the same value
 * forever are refused.  The compiled tree points into a private copy of the
 * schema's jsonb.
 *
 * Cache: one entry per topic (keyed by the topic's uid), holding the
 * compiled schema of one version in its own memory context.  The topic
 * cache (catalog.c) knows the topic's current version; when it differs from
 * the entry's, the entry is rebuilt.  Compiled regexes are freed by a reset
 * callback of the entry's context.
 *
 * Validation runs in a backend-wide scratch context reset before each event,
 * so nothing it allocates outlives the event: the detoasted value, iterators
 * and the error message.  The work per event is bounded: nested $ref
 * expansions and the number of $ref expansions are limited, interrupts are
 * checked at every $ref and array element, and pattern matching is done by
 * the regex engine, which checks for interrupts itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pg_eventbus.h"
#include "catalog.h"
#include "compat.h"
#include "schema.h"

/* JSON types, as a bit mask */
#define EB_T_NULL		0x01
#define EB_T_BOOLEAN	0x02
#define EB_T_OBJECT		0x04
#define EB_T_ARRAY		0x08
#define EB_T_NUMBER		0x10
#define EB_T_STRING		0x20
#define EB_T_INTEGER	0x40

/* Path segments kept for error messages; deeper ones are shown as "..." */
#define EB_MAX_PATH		64

typedef enum EbFormat
{
	EB_FMT_NONE = 0,
	EB_FMT_DATE_TIME,
	EB_FMT_DATE,
	EB_FMT_UUID,
	EB_FMT_EMAIL
} EbFormat;

typedef struct EbSNode EbSNode;

typedef struct EbSKey
{
	const char *name;			/* not NUL-terminated; points into the doc */
	int			len;
	EbSNode    *node;			/* properties only */
} EbSKey;

struct EbSNode
{
	int			boolean;		/* -1 an object schema, 0 false, 1 true */
	uint8		types;			/* 0: any type */
	const char *types_text;		/* "integer" or "null" ..., for errors */
	int			nprops;
	EbSKey	   *props;			/* sorted by eb_key_cmp */
	int			nrequired;
	EbSKey	   *required;
	EbSNode    *additional;
	int			nprefix;
	EbSNode   **prefix;
	EbSNode    *items;
	bool		has_enum;
	int			nenum;
	JsonbValue *enumvals;
	bool		has_const;
	JsonbValue	constval;
	Numeric		minimum;
	Numeric		maximum;
	Numeric		exmin;
	Numeric		exmax;
	Numeric		multiple;
	int32		min_length;		/* -1: none */
	int32		max_length;
	int32		min_items;
	int32		max_items;
	bool		unique;
	regex_t    *pattern;
	char	   *pattern_src;
	EbFormat	format;
	char	   *ref_src;
	EbSNode    *ref;
	int			nall;
	EbSNode   **all;
	int			nany;
	EbSNode   **any;
	int			none;
	EbSNode   **one;
	EbSNode    *not;
	char	   *where;			/* JSON pointer of this schema */
	int			mark;			/* cycle check: 0 new, 1 on stack, 2 done */
};

struct EbSchema
{
	Jsonb	   *doc;			/* private copy; nodes point into it */
	EbSNode    *root;
	List	   *regexes;		/* regex_t *, freed with the context */
	Numeric		zero;
};

typedef struct EbSCompile
{
	EbSchema   *schema;
	List	   *nodes;
	List	   *def_names;		/* char *, root $defs */
	List	   *def_nodes;
} EbSCompile;

static const char *const eb_format_names[] = {NULL, "date-time", "date", "uuid", "email"};

/* ---------- compiling ---------- */

static EbSNode *eb_compile_node(EbSCompile *c, JsonbValue *v, const char *where,
								int depth);

static char *
eb_pointer_child(const char *where, const char *kw, const char *key, int keylen)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s/%s", where, kw);
	if (key != NULL)
	{
		appendStringInfoChar(&buf, '/');
		for (i = 0; i < keylen; i++)
		{
			if (key[i] == '~')
				appendStringInfoString(&buf, "~0");
			else if (key[i] == '/')
				appendStringInfoString(&buf, "~1");
			else
				appendStringInfoChar(&buf, key[i]);
		}
	}
	return buf.data;
}

static char *
eb_pointer_index(const char *where, const char *kw, int index)
{
	return psprintf("%s/%s/%d", where, kw, index);
}

static void
eb_schema_bad(const char *kw, const char *where, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("schema keyword \"%s\" at %s must be %s", kw, where, what)));
}

static bool
eb_is_container(JsonbValue *v, bool object)
{
	return v->type == jbvBinary &&
		(JsonContainerIsObject(v->val.binary.data) != 0) == object;
}

static int
eb_key_cmp(const void *a, const void *b)
{
	const EbSKey *x = a;
	const EbSKey *y = b;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->name, y->name, x->len);
}

/* A non-negative integer keyword (minLength and the like). */
static int32
eb_compile_count(JsonbValue *v, const char *kw, const char *where)
{
	Numeric		n;

	if (v->type != jbvNumeric)
		eb_schema_bad(kw, where, "a non-negative integer");
	n = v->val.numeric;
	if (numeric_is_nan(n) || numeric_is_inf(n) ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(0)))) < 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(PG_INT32_MAX)))) > 0)
		eb_schema_bad(kw, where, "a non-negative integer");
	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(n))) != 0 &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  DirectFunctionCall2(numeric_trunc, NumericGetDatum(n),
															  Int32GetDatum(0)))) != 0)
		eb_schema_bad(kw, where, "a non-negative integer");
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(n)));
}

static Numeric
eb_compile_number(JsonbValue *v, const char *kw, const char *where)
{
	if (v->type != jbvNumeric)
		eb_schema_bad(kw, where, "a number");
	return v->val.numeric;
}

/* Schemas of an array keyword (prefixItems, allOf, anyOf, oneOf). */
static EbSNode **
eb_compile_list(EbSCompile *c, JsonbValue *v, const char *kw, const char *where,
				int depth, int *n)
{
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	EbSNode   **out;
	int			i = 0;

	if (!eb_is_container(v, false) || JsonContainerSize(v->val.binary.data) == 0)
		eb_schema_bad(kw, where, "a non-empty array of schemas");
	out = palloc(sizeof(EbSNode *) * JsonContainerSize(v->val.binary.data));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		out[i] = eb_compile_node(c, &elem, eb_pointer_index(where, kw, i), depth + 1);
		i++;
	}
	*n = i;
	return out;
}

static void
eb_regex_free_all(void *arg)
{
	EbSchema   *schema = arg;
	ListCell   *lc;

	foreach(lc, schema->regexes)
		pg_regfree((regex_t *) lfirst(lc));
	schema->regexes = NIL;
}

static void
eb_compile_pattern(EbSCompile *c, EbSNode *node, JsonbValue *v, const char *where)
{
	pg_wchar   *wide;
	int			wlen;
	int			rc;
	regex_t    *re;

	if (v->type != jbvString)
		eb_schema_bad("pattern", where, "a string");
	if (pg_mbstrlen_with_len(v->val.string.val, v->val.string.len) > EB_SCHEMA_MAX_PATTERN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("pattern at %s is longer than %d characters", where,
						EB_SCHEMA_MAX_PATTERN)));
	node->pattern_src = pnstrdup(v->val.string.val, v->val.string.len);
	wide = palloc(sizeof(pg_wchar) * (v->val.string.len + 1));
	wlen = pg_mb2wchar_with_len(v->val.string.val, wide, v->val.string.len);
	re = palloc(sizeof(regex_t));
	rc = pg_regcomp(re, wide, wlen, REG_ADVANCED, DEFAULT_COLLATION_OID);
	pfree(wide);
	if (rc != REG_OKAY)
	{
		char		errbuf[100];

		pg_regerror(rc, re, errbuf, sizeof(errbuf));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("invalid pattern at %s: %s", where, errbuf),
				 errdetail("Patterns are PostgreSQL regular expressions (as for the ~ operator).")));
	}
	c->schema->regexes = lappend(c->schema->regexes, re);
	node->pattern = re;
}

static void
eb_compile_types(EbSNode *node, JsonbValue *v, const char *where)
{
	static const char *const names[] = {"null", "boolean", "object", "array",
	"number", "string", "integer"};
	JsonbValue	one;
	JsonbIterator *it = NULL;
	JsonbIteratorToken tok;
	StringInfoData text;
	bool		first = true;
	bool		is_list = false;

	initStringInfo(&text);
	if (v->type == jbvString)
		one = *v;
	else if (eb_is_container(v, false) && JsonContainerSize(v->val.binary.data) > 0)
	{
		it = JsonbIteratorInit(v->val.binary.data);
		is_list = true;
	}
	else
		eb_schema_bad("type", where, "a type name or a non-empty array of type names");

	for (;;)
	{
		int			i;
		bool		known = false;

		if (is_list)
		{
			/* the iterator becomes NULL once it has left the array */
			tok = JsonbIteratorNext(&it, &one, true);
			if (tok == WJB_DONE)
				break;
			if (tok != WJB_ELEM)
				continue;
		}
		if (one.type != jbvString)
			eb_schema_bad("type", where, "a type name or a non-empty array of type names");
		for (i = 0; i < lengthof(names); i++)
		{
			if (one.val.string.len == (int) strlen(names[i]) &&
				memcmp(one.val.string.val, names[i], one.val.string.len) == 0)
			{
				node->types |= (1 << i);
				appendStringInfo(&text, "%s\"%s\"", first ? "" : " or ", names[i]);
				first = false;
				known = true;
			}
		}
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown type \"%.*s\" at %s", one.val.string.len,
							one.val.string.val, where),
					 errhint("Types are null, boolean, object, array, number, string and integer.")));
		if (!is_list)
			break;
	}
	node->types_text = text.data;
}

/* The meta-schema URI of draft 2020-12, with or without an empty fragment */
static bool
eb_is_draft_2020_12(const char *s, int len)
{
	const char *uri = "https://json-schema.org/draft/2020-12/schema";
	int			ulen = strlen(uri);

	return (len == ulen || (len == ulen + 1 && s[ulen] == '#')) &&
		memcmp(s, uri, ulen) == 0;
}

static bool
eb_kw(const char *key, const char *kw)
{
	return strcmp(key, kw) == 0;
}

static void
eb_compile_keyword(EbSCompile *c, EbSNode *node, const char *kw, JsonbValue *v,
				   const char *where, int depth)
{
	if (eb_kw(kw, "type"))
		eb_compile_types(node, v, where);
	else if (eb_kw(kw, "properties") || eb_kw(kw, "$defs"))
	{
		JsonbIterator *it;
		JsonbValue	k;
		JsonbValue	val;
		JsonbIteratorToken tok;
		bool		is_props = eb_kw(kw, "properties");
		bool		root_defs = !is_props && depth == 0;
		int			i = 0;

		if (!eb_is_container(v, true))
			eb_schema_bad(kw, where, "an object of schemas");
		if (is_props)
			node->props = palloc0(sizeof(EbSKey) * Max(JsonContainerSize(v->val.binary.data), 1));
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			EbSNode    *sub;

			if (tok != WJB_KEY)
				continue;
			tok = JsonbIteratorNext(&it, &val, true);
			Assert(tok == WJB_VALUE);
			sub = eb_compile_node(c, &val,
								  eb_pointer_child(where, kw, k.val.string.val, k.val.string.len),
								  depth + 1);
			if (is_props)
			{
				node->props[i].name = k.val.string.val;
				node->props[i].len = k.val.string.len;
				node->props[i].node = sub;
				i++;
			}
			else if (root_defs)
			{
				c->def_names = lappend(c->def_names, pnstrdup(k.val.string.val, k.val.string.len));
				c->def_nodes = lappend(c->def_nodes, sub);
			}
		}
		if (is_props)
		{
			node->nprops = i;
			qsort(node->props, i, sizeof(EbSKey), eb_key_cmp);
		}
	}
	else if (eb_kw(kw, "required"))
	{
		JsonbIterator *it;
		JsonbValue	elem;
		JsonbIteratorToken tok;

		if (!eb_is_container(v, false))
			eb_schema_bad(kw, where, "an array of property names");
		node->required = palloc0(sizeof(EbSKey) * Max(JsonContainerSize(v->val.binary.data), 1));
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (elem.type != jbvString)
				eb_schema_bad(kw, where, "an array of property names");
			node->required[node->nrequired].name = elem.val.string.val;
			node->required[node->nrequired].len = elem.val.string.len;
			node->nrequired++;
		}
	}
	else if (eb_kw(kw, "additionalProperties"))
		node->additional = eb_compile_node(c, v, eb_pointer_child(where, kw, NULL, 0), depth + 1);
	else if (eb_kw(kw, "items"))
	{
		if (eb_is_container(v, false))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("schema keyword \"items\" at %s must be a schema", where),
					 errhint("In draft 2020-12, schemas of the first items of an array are given by \"prefixItems\".")));
		node->items = eb_compile_node(c, v, eb_pointer_child(where, kw, NULL, 0), depth + 1);
	}
	else if (eb_kw(kw, "prefixItems"))
		node->prefix = eb_compile_list(c, v, kw, where, depth, &node->nprefix);
	else if (eb_kw(kw, "allOf"))
		node->all = eb_compile_list(c, v, kw, where, depth, &node->nall);
	else if (eb_kw(kw, "anyOf"))
		node->any = eb_compile_list(c, v, kw, where, depth, &node->nany);
	else if (eb_kw(kw, "oneOf"))
		node->one = eb_compile_list(c, v, kw, where, depth, &node->none);
	else if (eb_kw(kw, "not"))
		node->not = eb_compile_node(c, v, eb_pointer_child(where, kw, NULL, 0), depth + 1);
	else if (eb_kw(kw, "enum"))
	{
		JsonbIterator *it;
		JsonbValue	elem;
		JsonbIteratorToken tok;
		int			n;

		if (!eb_is_container(v, false))
			eb_schema_bad(kw, where, "an array");
		n = JsonContainerSize(v->val.binary.data);
		if (n > EB_SCHEMA_MAX_ENUM)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("enum at %s has %d values, more than %d", where, n,
							EB_SCHEMA_MAX_ENUM)));
		node->has_enum = true;
		node->enumvals = palloc(sizeof(JsonbValue) * Max(n, 1));
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (tok == WJB_ELEM)
				node->enumvals[node->nenum++] = elem;
		}
	}
	else if (eb_kw(kw, "const"))
	{
		node->has_const = true;
		node->constval = *v;
	}
	else if (eb_kw(kw, "minimum"))
		node->minimum = eb_compile_number(v, kw, where);
	else if (eb_kw(kw, "maximum"))
		node->maximum = eb_compile_number(v, kw, where);
	else if (eb_kw(kw, "exclusiveMinimum"))
		node->exmin = eb_compile_number(v, kw, where);
	else if (eb_kw(kw, "exclusiveMaximum"))
		node->exmax = eb_compile_number(v, kw, where);
	else if (eb_kw(kw, "multipleOf"))
	{
		node->multiple = eb_compile_number(v, kw, where);
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(node->multiple),
											  NumericGetDatum(c->schema->zero))) <= 0)
			eb_schema_bad(kw, where, "a number greater than 0");
	}
	else if (eb_kw(kw, "minLength"))
		node->min_length = eb_compile_count(v, kw, where);
	else if (eb_kw(kw, "maxLength"))
		node->max_length = eb_compile_count(v, kw, where);
	else if (eb_kw(kw, "minItems"))
		node->min_items = eb_compile_count(v, kw, where);
	else if (eb_kw(kw, "maxItems"))
		node->max_items = eb_compile_count(v, kw, where);
	else if (eb_kw(kw, "uniqueItems"))
	{
		if (v->type != jbvBool)
			eb_schema_bad(kw, where, "a boolean");
		node->unique = v->val.boolean;
	}
	else if (eb_kw(kw, "pattern"))
		eb_compile_pattern(c, node, v, where);
	else if (eb_kw(kw, "format"))
	{
		int			i;

		if (v->type != jbvString)
			eb_schema_bad(kw, where, "a string");
		for (i = 1; i < lengthof(eb_format_names); i++)
			if (v->val.string.len == (int) strlen(eb_format_names[i]) &&
				memcmp(v->val.string.val, eb_format_names[i], v->val.string.len) == 0)
				node->format = (EbFormat) i;
		if (node->format == EB_FMT_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unsupported format \"%.*s\" at %s", v->val.string.len,
							v->val.string.val, where),
					 errhint("Supported formats are date-time, date, uuid and email.")));
	}
	else if (eb_kw(kw, "$ref"))
	{
		if (v->type != jbvString)
			eb_schema_bad(kw, where, "a string");
		node->ref_src = pnstrdup(v->val.string.val, v->val.string.len);
	}
	else if (eb_kw(kw, "$schema"))
	{
		if (v->type != jbvString)
			eb_schema_bad(kw, where, "a string");
		if (!eb_is_draft_2020_12(v->val.string.val, v->val.string.len))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unsupported $schema \"%.*s\" at %s", v->val.string.len,
							v->val.string.val, where),
					 errhint("Schemas follow draft 2020-12: omit $schema or use \"https://json-schema.org/draft/2020-12/schema\".")));
	}
	else if (eb_kw(kw, "$id") || eb_kw(kw, "title") || eb_kw(kw, "description") ||
			 eb_kw(kw, "$comment"))
	{
		if (v->type != jbvString)
			eb_schema_bad(kw, where, "a string");
	}
	else if (eb_kw(kw, "deprecated") || eb_kw(kw, "readOnly") || eb_kw(kw, "writeOnly"))
	{
		if (v->type != jbvBool)
			eb_schema_bad(kw, where, "a boolean");
	}
	else if (eb_kw(kw, "examples"))
	{
		if (!eb_is_container(v, false))
			eb_schema_bad(kw, where, "an array");
	}
	else if (eb_kw(kw, "default"))
		 /* any value */ ;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unsupported schema keyword \"%s\" at %s", kw, where),
				 errdetail("pg_eventbus validates a subset of JSON Schema draft 2020-12 and refuses keywords it would otherwise ignore."),
				 errhint("The supported keywords are listed in docs/schemas.md.")));
}

static EbSNode *
eb_compile_node(EbSCompile *c, JsonbValue *v, const char *where, int depth)
{
	EbSNode    *node;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	val;
	JsonbIteratorToken tok;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (depth > EB_SCHEMA_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("schema at %s is nested more than %d levels deep", where,
						EB_SCHEMA_MAX_DEPTH)));

	node = palloc0(sizeof(EbSNode));
	node->where = pstrdup(where);
	node->min_length = node->max_length = node->min_items = node->max_items = -1;
	c->nodes = lappend(c->nodes, node);

	if (v->type == jbvBool)
	{
		node->boolean = v->val.boolean ? 1 : 0;
		return node;
	}
	if (!eb_is_container(v, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema at %s must be an object or a boolean", where)));
	node->boolean = -1;

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *kw;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &val, true);
		Assert(tok == WJB_VALUE);
		kw = pnstrdup(k.val.string.val, k.val.string.len);
		eb_compile_keyword(c, node, kw, &val, where, depth);
		pfree(kw);
	}
	return node;
}

/* Resolves "#" and "#/$defs/<name>" (JSON pointer escapes ~0 and ~1). */
static void
eb_resolve_ref(EbSCompile *c, EbSNode *node)
{
	const char *prefix = "#/$defs/";
	const char *src = node->ref_src;
	ListCell   *ln;
	ListCell   *lnode;

	if (strcmp(src, "#") == 0)
	{
		node->ref = c->schema->root;
		return;
	}
	if (strncmp(src, prefix, strlen(prefix)) == 0 && strchr(src + strlen(prefix), '/') == NULL)
	{
		StringInfoData name;
		const char *p;

		initStringInfo(&name);
		for (p = src + strlen(prefix); *p; p++)
		{
			if (p[0] == '~' && p[1] == '0')
				appendStringInfoChar(&name, '~'), p++;
			else if (p[0] == '~' && p[1] == '1')
				appendStringInfoChar(&name, '/'), p++;
			else
				appendStringInfoChar(&name, *p);
		}
		forboth(ln, c->def_names, lnode, c->def_nodes)
		{
			if (strcmp((char *) lfirst(ln), name.data) == 0)
			{
				node->ref = lfirst(lnode);
				return;
			}
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("$ref \"%s\" at %s names no schema of the root's $defs", src,
						node->where)));
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unsupported $ref \"%s\" at %s", src, node->where),
			 errdetail("Only references within the same schema are supported: \"#\" or \"#/$defs/<name>\".")));
}

/*
 * Refuses a cycle of schemas that apply to the same value ($ref, allOf,
 * anyOf, oneOf, not): validating it would never reach a nested value.
 */
static void
eb_check_cycles(EbSNode *node)
{
	int			i;

	check_stack_depth();
	if (node->mark == 2)
		return;
	if (node->mark == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema at %s refers to itself without validating a nested value", node->where),
				 errdetail("A cycle of $ref, allOf, anyOf, oneOf or not would validate the same value forever.")));
	node->mark = 1;
	if (node->ref)
		eb_check_cycles(node->ref);
	for (i = 0; i < node->nall; i++)
		eb_check_cycles(node->all[i]);
	for (i = 0; i < node->nany; i++)
		eb_check_cycles(node->any[i]);
	for (i = 0; i < node->none; i++)
		eb_check_cycles(node->one[i]);
	if (node->not)
		eb_check_cycles(node->not);
	node->mark = 2;
}

EbSchema *
eb_schema_compile(Jsonb *doc, MemoryContext cxt)
{
	MemoryContext oldcxt;
	MemoryContextCallback *cb;
	EbSCompile	c;
	EbSchema   *schema;
	JsonbValue	root;
	ListCell   *lc;

	if (VARSIZE(doc) > EB_SCHEMA_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("schema of %zu bytes is larger than %d bytes",
						(Size) VARSIZE(doc), EB_SCHEMA_MAX_SIZE)));

	oldcxt = MemoryContextSwitchTo(cxt);
	schema = palloc0(sizeof(EbSchema));
	schema->doc = palloc(VARSIZE(doc));
	memcpy(schema->doc, doc, VARSIZE(doc));
	schema->zero = int64_to_numeric(0);
	cb = palloc0(sizeof(MemoryContextCallback));
	cb->func = eb_regex_free_all;
	cb->arg = schema;
	MemoryContextRegisterResetCallback(cxt, cb);

	memset(&c, 0, sizeof(c));
	c.schema = schema;
	if (JB_ROOT_IS_SCALAR(schema->doc))
		JsonbExtractScalar(&schema->doc->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &schema->doc->root;
		root.val.binary.len = VARSIZE(schema->doc) - VARHDRSZ;
	}
	schema->root = eb_compile_node(&c, &root, "#", 0);

	foreach(lc, c.nodes)
	{
		EbSNode    *node = lfirst(lc);

		if (node->ref_src)
			eb_resolve_ref(&c, node);
	}
	foreach(lc, c.nodes)
		eb_check_cycles((EbSNode *) lfirst(lc));

	MemoryContextSwitchTo(oldcxt);
	return schema;
}

/* ---------- validating ---------- */

typedef struct EbPathSeg
{
	const char *key;			/* NULL for an array index */
	int			len;
	int			index;
} EbPathSeg;

typedef struct EbVState
{
	EbSchema   *schema;
	bool		report;			/* build a message for the first failure */
	bool		have_error;
	StringInfoData msg;
	int			depth;
	EbPathSeg	path[EB_MAX_PATH];
	int			ref_depth;
	int64		ref_count;
} EbVState;

static void
eb_append_path(StringInfo buf, EbVState *st)
{
	int			i;

	appendStringInfoChar(buf, '$');
	for (i = 0; i < st->depth && i < EB_MAX_PATH; i++)
	{
		EbPathSeg  *seg = &st->path[i];
		bool		plain = seg->key != NULL && seg->len > 0;
		int			j;

		if (seg->key == NULL)
		{
			appendStringInfo(buf, "[%d]", seg->index);
			continue;
		}
		for (j = 0; plain && j < seg->len; j++)
		{
			char		ch = seg->key[j];

			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
				  (j > 0 && ch >= '0' && ch <= '9')))
				plain = false;
		}
		if (plain)
			appendStringInfo(buf, ".%.*s", seg->len, seg->key);
		else
		{
			appendStringInfoChar(buf, '[');
			escape_json(buf, pnstrdup(seg->key, seg->len));
			appendStringInfoChar(buf, ']');
		}
	}
	if (st->depth > EB_MAX_PATH)
		appendStringInfoString(buf, "...");
}

static bool
eb_vfail(EbVState *st, const char *fmt,...) pg_attribute_printf(2, 3);

static bool
eb_vfail(EbVState *st, const char *fmt,...)
{
	if (st->report && !st->have_error)
	{
		eb_append_path(&st->msg, st);
		appendStringInfoString(&st->msg, ": ");
		for (;;)
		{
			va_list		args;
			int			needed;

			va_start(args, fmt);
			needed = appendStringInfoVA(&st->msg, fmt, args);
			va_end(args);
			if (needed == 0)
				break;
			enlargeStringInfo(&st->msg, needed);
		}
		st->have_error = true;
	}
	return false;
}

/* Fails; the message's arguments are only computed when reported. */
#define EB_FAIL(...) return (st->report && !st->have_error ? eb_vfail(st, __VA_ARGS__) : false)

static char *
eb_numstr(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

static char *
eb_quote(const char *s, int len)
{
	StringInfoData buf;
	int			clip = pg_mbcliplen(s, len, 60);

	initStringInfo(&buf);
	escape_json(&buf, pnstrdup(s, clip));
	if (clip < len)
	{
		buf.len--;
		appendStringInfoString(&buf, "...\"");
	}
	return buf.data;
}

/* A short rendering of a value for error messages. */
static char *
eb_render(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvBool:
			return v->val.boolean ? "true" : "false";
		case jbvNumeric:
			return eb_numstr(v->val.numeric);
		case jbvString:
			return eb_quote(v->val.string.val, v->val.string.len);
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "an object" : "an array";
		default:
			return "a value";
	}
}

static int
eb_numcmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

static bool
eb_is_integral(Numeric n)
{
	Numeric		t;

	if (numeric_is_nan(n) || numeric_is_inf(n))
		return false;
	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(n))) == 0)
		return true;
	t = DatumGetNumeric(DirectFunctionCall2(numeric_trunc, NumericGetDatum(n),
											Int32GetDatum(0)));
	return eb_numcmp(t, n) == 0;
}

static int
eb_type_rank(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return 0;
		case jbvBool:
			return 1;
		case jbvNumeric:
			return 2;
		case jbvString:
			return 3;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? 5 : 4;
		default:
			return 6;
	}
}

/* A total order of JSON values in which equal values (1 and 1.0 too) compare 0. */
static int
eb_value_cmp(JsonbValue *a, JsonbValue *b)
{
	int			ra = eb_type_rank(a);
	int			rb = eb_type_rank(b);

	if (ra != rb)
		return ra < rb ? -1 : 1;
	switch (a->type)
	{
		case jbvBool:
			return (int) a->val.boolean - (int) b->val.boolean;
		case jbvNumeric:
			return eb_numcmp(a->val.numeric, b->val.numeric);
		case jbvString:
			if (a->val.string.len != b->val.string.len)
				return a->val.string.len < b->val.string.len ? -1 : 1;
			return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
		case jbvBinary:
			return compareJsonbContainers(a->val.binary.data, b->val.binary.data);
		default:
			return 0;
	}
}

typedef struct EbIndexed
{
	JsonbValue	v;
	int			index;
} EbIndexed;

static int
eb_indexed_cmp(const void *a, const void *b)
{
	EbIndexed  *x = (EbIndexed *) a;
	EbIndexed  *y = (EbIndexed *) b;
	int			r;

	CHECK_FOR_INTERRUPTS();
	r = eb_value_cmp(&x->v, &y->v);
	if (r != 0)
		return r;
	return x->index - y->index;
}

/* ---------- formats ---------- */

static bool
eb_digits(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int
eb_num(const char *s, int n)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* full-date of RFC 3339: YYYY-MM-DD, a day that exists */
static bool
eb_is_date(const char *s, int len)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			y;
	int			m;
	int			d;

	if (len != 10 || s[4] != '-' || s[7] != '-' ||
		!eb_digits(s, 4) || !eb_digits(s + 5, 2) || !eb_digits(s + 8, 2))
		return false;
	y = eb_num(s, 4);
	m = eb_num(s + 5, 2);
	d = eb_num(s + 8, 2);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	return true;
}

/* date-time of RFC 3339: full-date "T" HH:MM:SS[.frac] ("Z" / +HH:MM / -HH:MM) */
static bool
eb_is_date_time(const char *s, int len)
{
	int			i;

	if (len < 20 || !eb_is_date(s, 10) || (s[10] != 'T' && s[10] != 't'))
		return false;
	s += 11;
	len -= 11;
	if (len < 9 || s[2] != ':' || s[5] != ':' ||
		!eb_digits(s, 2) || !eb_digits(s + 3, 2) || !eb_digits(s + 6, 2) ||
		eb_num(s, 2) > 23 || eb_num(s + 3, 2) > 59 || eb_num(s + 6, 2) > 60)
		return false;
	i = 8;
	if (s[i] == '.')
	{
		int			start = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start)
			return false;
	}
	if (len - i == 1)
		return s[i] == 'Z' || s[i] == 'z';
	return len - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
		eb_digits(s + i + 1, 2) && eb_digits(s + i + 4, 2) &&
		eb_num(s + i + 1, 2) <= 23 && eb_num(s + i + 4, 2) <= 59;
}

static bool
eb_is_uuid(const char *s, int len)
{
	int			i;

	if (len != 36)
		return false;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/*
 * A practical check of an address (RFC 5321 shape, without quoted local
 * parts or comments): local@domain, a dot-atom local part of at most 64
 * bytes, a domain of dot-separated labels of letters, digits and hyphens
 * (any byte above 127 is accepted in both, for internationalized addresses).
 */
static bool
eb_is_email(const char *s, int len)
{
	const char *at = NULL;
	int			i;
	int			llen;
	int			label = 0;

	for (i = 0; i < len; i++)
		if (s[i] == '@')
		{
			if (at)
				return false;
			at = s + i;
		}
	if (at == NULL)
		return false;
	llen = at - s;
	if (llen == 0 || llen > 64 || s[0] == '.' || s[llen - 1] == '.')
		return false;
	for (i = 0; i < llen; i++)
	{
		unsigned char ch = (unsigned char) s[i];

		if (ch == '.' && s[i + 1] == '.')
			return false;
		if (ch < 128 && !isalnum(ch) && strchr(".!#$%&'*+/=?^_`{|}~-", ch) == NULL)
			return false;
	}
	if (len - llen - 1 < 1 || len - llen - 1 > 255)
		return false;
	for (i = llen + 1; i <= len; i++)
	{
		unsigned char ch = i < len ? (unsigned char) s[i] : '.';

		if (ch == '.')
		{
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (label == 0 && ch == '-')
			return false;
		if (ch < 128 && !isalnum(ch) && ch != '-')
			return false;
		label++;
	}
	return true;
}

static bool
eb_format_ok(EbFormat f, const char *s, int len)
{
	switch (f)
	{
		case EB_FMT_DATE_TIME:
			return eb_is_date_time(s, len);
		case EB_FMT_DATE:
			return eb_is_date(s, len);
		case EB_FMT_UUID:
			return eb_is_uuid(s, len);
		case EB_FMT_EMAIL:
			return eb_is_email(s, len);
		default:
			return true;
	}
}

/* ---------- the validator ---------- */

static bool eb_validate(EbSNode *n, JsonbValue *v, EbVState *st);

static bool
eb_validate_child_key(EbSNode *n, JsonbValue *v, EbVState *st, const char *key, int len)
{
	bool		ok;

	if (st->depth < EB_MAX_PATH)
	{
		st->path[st->depth].key = key;
		st->path[st->depth].len = len;
	}
	st->depth++;
	ok = eb_validate(n, v, st);
	st->depth--;
	return ok;
}

static bool
eb_validate_child_index(EbSNode *n, JsonbValue *v, EbVState *st, int index)
{
	bool		ok;

	if (st->depth < EB_MAX_PATH)
	{
		st->path[st->depth].key = NULL;
		st->path[st->depth].index = index;
	}
	st->depth++;
	ok = eb_validate(n, v, st);
	st->depth--;
	return ok;
}

/* Runs a subschema quietly: only whether it matches. */
static bool
eb_matches(EbSNode *n, JsonbValue *v, EbVState *st)
{
	bool		save = st->report;
	bool		ok;

	st->report = false;
	ok = eb_validate(n, v, st);
	st->report = save;
	return ok;
}

static void
eb_limit_error(EbVState *st, const char *what, int limit)
{
	StringInfoData path;

	initStringInfo(&path);
	eb_append_path(&path, st);
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("%s: validation needs more than %d %s", path.data, limit, what),
			 errdetail("The schema's $ref expansions are limited; see docs/schemas.md.")));
}

static bool
eb_validate_object(EbSNode *n, JsonbContainer *c, EbVState *st)
{
	JsonbValue	val;
	int			i;

	for (i = 0; i < n->nrequired; i++)
	{
		if (getKeyJsonValueFromContainer(c, n->required[i].name, n->required[i].len, &val) == NULL)
			EB_FAIL("required property %s is missing",
					eb_quote(n->required[i].name, n->required[i].len));
	}
	for (i = 0; i < n->nprops; i++)
	{
		EbSKey	   *p = &n->props[i];

		if (getKeyJsonValueFromContainer(c, p->name, p->len, &val) != NULL &&
			!eb_validate_child_key(p->node, &val, st, p->name, p->len))
			return false;
	}
	if (n->additional != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(c);
		JsonbIteratorToken tok;
		JsonbValue	k;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			EbSKey		probe;

			if (tok != WJB_KEY)
				continue;
			tok = JsonbIteratorNext(&it, &val, true);
			probe.name = k.val.string.val;
			probe.len = k.val.string.len;
			if (n->nprops > 0 &&
				bsearch(&probe, n->props, n->nprops, sizeof(EbSKey), eb_key_cmp) != NULL)
				continue;
			if (n->additional->boolean == 0)
				EB_FAIL("property %s is not allowed (additionalProperties)",
						eb_quote(probe.name, probe.len));
			if (!eb_validate_child_key(n->additional, &val, st, probe.name, probe.len))
				return false;
		}
	}
	return true;
}

static bool
eb_validate_array(EbSNode *n, JsonbContainer *c, EbVState *st)
{
	int			count = JsonContainerSize(c);

	if (n->min_items >= 0 && count < n->min_items)
		EB_FAIL("array has %d items, fewer than minItems %d", count, n->min_items);
	if (n->max_items >= 0 && count > n->max_items)
		EB_FAIL("array has %d items, more than maxItems %d", count, n->max_items);
	if (n->nprefix > 0 || n->items != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(c);
		JsonbIteratorToken tok;
		JsonbValue	elem;
		int			i = 0;

		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			EbSNode    *sub;

			if (tok != WJB_ELEM)
				continue;
			CHECK_FOR_INTERRUPTS();
			sub = i < n->nprefix ? n->prefix[i] : n->items;
			if (sub != NULL && !eb_validate_child_index(sub, &elem, st, i))
				return false;
			i++;
		}
	}
	if (n->unique && count > 1)
	{
		JsonbIterator *it = JsonbIteratorInit(c);
		JsonbIteratorToken tok;
		EbIndexed  *elems = palloc(sizeof(EbIndexed) * (count + 1));
		int			i = 0;

		while ((tok = JsonbIteratorNext(&it, &elems[i].v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			elems[i].index = i;
			i++;
		}
		qsort(elems, i, sizeof(EbIndexed), eb_indexed_cmp);
		for (i = 1; i < count; i++)
		{
			if (eb_value_cmp(&elems[i - 1].v, &elems[i].v) == 0)
				EB_FAIL("items %d and %d are equal (uniqueItems)",
						elems[i - 1].index, elems[i].index);
		}
	}
	return true;
}

static bool
eb_validate_string(EbSNode *n, JsonbValue *v, EbVState *st)
{
	const char *s = v->val.string.val;
	int			len = v->val.string.len;

	if (n->min_length >= 0 || n->max_length >= 0)
	{
		int			chars = pg_mbstrlen_with_len(s, len);

		if (n->min_length >= 0 && chars < n->min_length)
			EB_FAIL("%s is shorter than minLength %d", eb_render(v), n->min_length);
		if (n->max_length >= 0 && chars > n->max_length)
			EB_FAIL("%s is longer than maxLength %d", eb_render(v), n->max_length);
	}
	if (n->pattern != NULL)
	{
		pg_wchar   *wide = palloc(sizeof(pg_wchar) * (len + 1));
		int			wlen = pg_mb2wchar_with_len(s, wide, len);
		int			rc = pg_regexec(n->pattern, wide, wlen, 0, NULL, 0, NULL, 0);

		if (rc == REG_NOMATCH)
			EB_FAIL("%s does not match pattern %s", eb_render(v),
					eb_quote(n->pattern_src, strlen(n->pattern_src)));
		if (rc != REG_OKAY)
		{
			char		errbuf[100];

			pg_regerror(rc, n->pattern, errbuf, sizeof(errbuf));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
					 errmsg("pattern at %s failed: %s", n->where, errbuf)));
		}
	}
	if (n->format != EB_FMT_NONE && !eb_format_ok(n->format, s, len))
		EB_FAIL("%s is not a valid %s", eb_render(v), eb_format_names[n->format]);
	return true;
}

static bool
eb_validate_number(EbSNode *n, JsonbValue *v, EbVState *st)
{
	Numeric		num = v->val.numeric;

	if (n->minimum && eb_numcmp(num, n->minimum) < 0)
		EB_FAIL("%s is less than minimum %s", eb_render(v), eb_numstr(n->minimum));
	if (n->maximum && eb_numcmp(num, n->maximum) > 0)
		EB_FAIL("%s is greater than maximum %s", eb_render(v), eb_numstr(n->maximum));
	if (n->exmin && eb_numcmp(num, n->exmin) <= 0)
		EB_FAIL("%s is less than or equal to exclusiveMinimum %s", eb_render(v),
				eb_numstr(n->exmin));
	if (n->exmax && eb_numcmp(num, n->exmax) >= 0)
		EB_FAIL("%s is greater than or equal to exclusiveMaximum %s", eb_render(v),
				eb_numstr(n->exmax));
	if (n->multiple)
	{
		Numeric		rem = DatumGetNumeric(DirectFunctionCall2(numeric_mod,
															  NumericGetDatum(num),
															  NumericGetDatum(n->multiple)));

		if (eb_numcmp(rem, st->schema->zero) != 0)
			EB_FAIL("%s is not a multiple of %s", eb_render(v), eb_numstr(n->multiple));
	}
	return true;
}

static bool
eb_validate(EbSNode *n, JsonbValue *v, EbVState *st)
{
	int			jtype;
	int			i;

	check_stack_depth();
	if (n->boolean == 1)
		return true;
	if (n->boolean == 0)
		EB_FAIL("no value is allowed here (the schema is false)");

	if (n->ref != NULL)
	{
		bool		ok;

		CHECK_FOR_INTERRUPTS();
		if (st->ref_depth >= EB_SCHEMA_MAX_REF_DEPTH)
			eb_limit_error(st, "nested $ref expansions", EB_SCHEMA_MAX_REF_DEPTH);
		if (++st->ref_count > EB_SCHEMA_MAX_REF_EXPANSIONS)
			eb_limit_error(st, "$ref expansions", EB_SCHEMA_MAX_REF_EXPANSIONS);
		st->ref_depth++;
		ok = eb_validate(n->ref, v, st);
		st->ref_depth--;
		if (!ok)
			return false;
	}

	switch (v->type)
	{
		case jbvNull:
			jtype = EB_T_NULL;
			break;
		case jbvBool:
			jtype = EB_T_BOOLEAN;
			break;
		case jbvNumeric:
			jtype = EB_T_NUMBER;
			break;
		case jbvString:
			jtype = EB_T_STRING;
			break;
		default:
			jtype = JsonContainerIsObject(v->val.binary.data) ? EB_T_OBJECT : EB_T_ARRAY;
			break;
	}
	if (n->types != 0 && (n->types & jtype) == 0 &&
		!(jtype == EB_T_NUMBER && (n->types & EB_T_INTEGER) && eb_is_integral(v->val.numeric)))
		EB_FAIL("%s is not of type %s", eb_render(v), n->types_text);

	if (n->has_const && eb_value_cmp(v, &n->constval) != 0)
	{
		if (n->constval.type == jbvBinary)
			EB_FAIL("%s is not equal to the const value", eb_render(v));
		EB_FAIL("%s is not the const value %s", eb_render(v), eb_render(&n->constval));
	}
	if (n->has_enum)
	{
		bool		found = false;

		for (i = 0; i < n->nenum && !found; i++)
			found = eb_value_cmp(v, &n->enumvals[i]) == 0;
		if (!found)
			EB_FAIL("%s is not one of the enum values", eb_render(v));
	}

	switch (jtype)
	{
		case EB_T_OBJECT:
			if (!eb_validate_object(n, v->val.binary.data, st))
				return false;
			break;
		case EB_T_ARRAY:
			if (!eb_validate_array(n, v->val.binary.data, st))
				return false;
			break;
		case EB_T_STRING:
			if (!eb_validate_string(n, v, st))
				return false;
			break;
		case EB_T_NUMBER:
			if (!eb_validate_number(n, v, st))
				return false;
			break;
	}

	for (i = 0; i < n->nall; i++)
		if (!eb_validate(n->all[i], v, st))
			return false;
	if (n->nany > 0)
	{
		bool		found = false;

		for (i = 0; i < n->nany && !found; i++)
			found = eb_matches(n->any[i], v, st);
		if (!found)
			EB_FAIL("%s matches no schema of anyOf", eb_render(v));
	}
	if (n->none > 0)
	{
		int			matched = 0;

		for (i = 0; i < n->none; i++)
			matched += eb_matches(n->one[i], v, st) ? 1 : 0;
		if (matched != 1)
			EB_FAIL("%s matches %d schemas of oneOf, not exactly one", eb_render(v), matched);
	}
	if (n->not != NULL && eb_matches(n->not, v, st))
		EB_FAIL("%s matches the schema of not", eb_render(v));
	return true;
}

/* ---------- the cache and the publish path ---------- */

typedef struct EbSchemaEntry
{
	int64		uid;			/* hash key: the topic's uid */
	int32		version;
	MemoryContext cxt;
	EbSchema   *schema;			/* NULL until compiled */
	Jsonb	   *header;			/* {"eventbus-schema-version": "<version>"} */
} EbSchemaEntry;

static HTAB *schema_cache = NULL;
static MemoryContext scratch_cxt = NULL;

static Oid
eb_schema_table(void)
{
	Oid			nsp = eb_schema_oid(true);

	return OidIsValid(nsp) ? get_relname_relid("topic_schema", nsp) : InvalidOid;
}

/*
 * Scans eventbus.topic_schema for one topic (as the caller: nothing is
 * evaluated).  With version > 0, returns a copy of that version's schema;
 * otherwise sets *current to the highest version not dropped.
 */
static Jsonb *
eb_schema_scan(int32 topic_id, int32 version, Snapshot snap, int32 *current)
{
	Oid			relid = eb_schema_table();
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	TupleDesc	desc;
	AttrNumber	a_id;
	AttrNumber	a_version;
	AttrNumber	a_schema;
	AttrNumber	a_dropped;
	Jsonb	   *result = NULL;

	if (current)
		*current = 0;
	if (!OidIsValid(relid))
		return NULL;
	a_id = get_attnum(relid, "topic_id");
	a_version = get_attnum(relid, "version");
	a_schema = get_attnum(relid, "schema");
	a_dropped = get_attnum(relid, "dropped_at");
	if (a_id == InvalidAttrNumber || a_version == InvalidAttrNumber ||
		a_schema == InvalidAttrNumber || a_dropped == InvalidAttrNumber)
		elog(ERROR, "eventbus.topic_schema lacks a column");

	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	scan = eb_table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		int32		v;

		if (DatumGetInt32(heap_getattr(tup, a_id, desc, &isnull)) != topic_id)
			continue;
		v = DatumGetInt32(heap_getattr(tup, a_version, desc, &isnull));
		if (version > 0)
		{
			if (v == version)
			{
				result = DatumGetJsonbPCopy(heap_getattr(tup, a_schema, desc, &isnull));
				break;
			}
			continue;
		}
		(void) heap_getattr(tup, a_dropped, desc, &isnull);
		if (isnull && v > *current)
			*current = v;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

int32
eb_schema_current_version(int32 topic_id, Snapshot snap)
{
	int32		current;

	(void) eb_schema_scan(topic_id, 0, snap, &current);
	return current;
}

static Jsonb *
eb_version_header(int32 version)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *res;
	char	   *s = psprintf("%d", version);

	k.type = jbvString;
	k.val.string.val = EB_SCHEMA_VERSION_HEADER;
	k.val.string.len = strlen(EB_SCHEMA_VERSION_HEADER);
	v.type = jbvString;
	v.val.string.val = s;
	v.val.string.len = strlen(s);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	pushJsonbValue(&state, WJB_KEY, &k);
	pushJsonbValue(&state, WJB_VALUE, &v);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

static EbSchemaEntry *
eb_schema_cache_get(EbTopic *topic)
{
	EbSchemaEntry *entry;
	bool		found;
	Jsonb	   *doc;
	Snapshot	snap;
	MemoryContext oldcxt;

	if (schema_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(EbSchemaEntry);
		ctl.hcxt = CacheMemoryContext;
		schema_cache = hash_create("pg_eventbus schemas", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		scratch_cxt = AllocSetContextCreate(CacheMemoryContext,
											"pg_eventbus schema validation",
											ALLOCSET_DEFAULT_SIZES);
	}
	entry = hash_search(schema_cache, &topic->uid, HASH_ENTER, &found);
	if (!found)
	{
		entry->cxt = NULL;
		entry->schema = NULL;
		entry->version = 0;
	}
	if (entry->schema != NULL && entry->version == topic->schema_version)
		return entry;

	if (entry->cxt != NULL)
		MemoryContextDelete(entry->cxt);
	entry->schema = NULL;
	entry->version = topic->schema_version;
	entry->cxt = AllocSetContextCreate(CacheMemoryContext, "pg_eventbus schema",
									   ALLOCSET_SMALL_SIZES);

	snap = RegisterSnapshot(GetLatestSnapshot());
	oldcxt = MemoryContextSwitchTo(entry->cxt);
	doc = eb_schema_scan(topic->topic_id, topic->schema_version, snap, NULL);
	MemoryContextSwitchTo(oldcxt);
	UnregisterSnapshot(snap);
	if (doc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("version %d of the schema of topic \"%s\" does not exist",
						topic->schema_version, topic->name)));
	oldcxt = MemoryContextSwitchTo(entry->cxt);
	entry->header = eb_version_header(topic->schema_version);
	MemoryContextSwitchTo(oldcxt);
	entry->schema = eb_schema_compile(doc, entry->cxt);
	return entry;
}

/* headers plus the version header, in the current memory context */
static Jsonb *
eb_add_version_header(Jsonb *headers, EbSchemaEntry *entry)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;
	JsonbValue	k;
	Jsonb	   *copy;

	if (headers == NULL)
	{
		copy = palloc(VARSIZE(entry->header));
		memcpy(copy, entry->header, VARSIZE(entry->header));
		return copy;
	}
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_END_OBJECT)
		{
			JsonbValue	hv;

			k.type = jbvString;
			k.val.string.val = EB_SCHEMA_VERSION_HEADER;
			k.val.string.len = strlen(EB_SCHEMA_VERSION_HEADER);
			(void) getKeyJsonValueFromContainer(&entry->header->root, k.val.string.val,
												k.val.string.len, &hv);
			pushJsonbValue(&state, WJB_KEY, &k);
			pushJsonbValue(&state, WJB_VALUE, &hv);
		}
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}

void
eb_schema_validate_event(EbTopic *topic, Datum value, Jsonb **headers, int element)
{
	EbSchemaEntry *entry;
	MemoryContext oldcxt;
	EbVState	st;
	Jsonb	   *jb;
	JsonbValue	root;
	bool		ok;

	if (topic->schema_version == 0)
		return;
	entry = eb_schema_cache_get(topic);

	MemoryContextReset(scratch_cxt);
	oldcxt = MemoryContextSwitchTo(scratch_cxt);
	jb = DatumGetJsonbP(value);
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &jb->root;
		root.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	memset(&st, 0, offsetof(EbVState, path));
	st.schema = entry->schema;
	st.report = true;
	initStringInfo(&st.msg);
	ok = eb_validate(entry->schema->root, &root, &st);
	MemoryContextSwitchTo(oldcxt);

	if (!ok)
	{
		if (element > 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("vals[%d]: %s", element, st.msg.data),
					 errdetail("Event %d of the batch (vals[%d], counting from 1) does not conform to version %d of the schema of topic \"%s\"; no event of the batch was published.",
							   element, element, entry->version, topic->name)));
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("%s", st.msg.data),
				 errdetail("The event does not conform to version %d of the schema of topic \"%s\".",
						   entry->version, topic->name)));
	}
	*headers = eb_add_version_header(*headers, entry);
}
