/*-------------------------------------------------------------------------
 *
 * schema_compile.c
 *	  Compiling a topic's JSON Schema into a tree of nodes (schema_int.h).
 *
 * Every keyword is checked: anything outside the supported subset of
 * draft 2020-12 is refused, never ignored, and so is a schema beyond the
 * limits of schema.h (size, nesting, enum length, pattern length).
 * Patterns are compiled with PostgreSQL's regex engine (whose own limits
 * refuse patterns that are too complex); the compiled regexes are freed by
 * a reset callback of the memory context the schema lives in.  $refs are
 * resolved to nodes, and cycles of $ref, allOf, anyOf, oneOf and not that
 * would validate the same value forever are refused.  The tree points into
 * a private copy of the schema's jsonb.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"

#include "schema_int.h"

typedef struct EbSCompile
{
	EbSchema   *schema;
	List	   *nodes;
	List	   *def_names;		/* char *, root $defs */
	List	   *def_nodes;
} EbSCompile;

const char *const eb_format_names[] = {NULL, "date-time", "date", "uuid", "email"};

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

/* Order of property names: by length, then bytes (bsearch of properties) */
int
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
		for (i = 0; i < (int) lengthof(names); i++)
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
		for (i = 1; i < (int) lengthof(eb_format_names); i++)
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

