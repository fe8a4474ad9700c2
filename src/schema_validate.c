/*-------------------------------------------------------------------------
 *
 * schema_validate.c
 *	  Validating a JSON value against a compiled schema (schema_int.h).
 *
 * The validator walks the value's jsonb in place and reports the first
 * failure as "<JSON path>: <rule broken>".  Subschemas of anyOf, oneOf and
 * not run quietly (no message is built).  It allocates in the caller's
 * memory context, which schema.c resets before each event.  The work per
 * event is bounded: nested $ref expansions and the number of $ref
 * expansions are limited (schema.h), interrupts are checked at every $ref
 * and array item, and the regex engine checks them while it matches.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"

#include "schema_int.h"

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

bool
eb_schema_check(EbSchema *schema, JsonbValue *root, StringInfo msg)
{
	EbVState	st;

	st.schema = schema;
	st.report = true;
	st.have_error = false;
	st.depth = 0;
	st.ref_depth = 0;
	st.ref_count = 0;
	initStringInfo(&st.msg);
	if (eb_validate(schema->root, root, &st))
		return true;
	*msg = st.msg;
	return false;
}
