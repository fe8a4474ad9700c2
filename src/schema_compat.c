/*-------------------------------------------------------------------------
 *
 * schema_compat.c
 *	  Compatibility between two versions of a topic's JSON Schema: is every
 *	  JSON value valid under the writer's schema also valid under the
 *	  reader's?  (See schema_compat.h for the modes in these terms.)
 *
 * The check is a sound inclusion test, L(writer) <= L(reader), over the
 * keyword subset that register_schema() accepts.  "Sound" means that an
 * empty answer is a proof: where the test cannot decide (a changed pattern,
 * a oneOf whose branches may overlap, a "not"), it says so in a reason and
 * the change is refused.  The rules follow Confluent Schema Registry's JSON
 * Schema compatibility rules, except where those accept a change that a
 * validator can refuse (a required property added with a default; events
 * are validated, not filled in with defaults).
 *
 * How a pair is compared (sub()):
 *	- A reader schema is the conjunction of its parts: its plain keywords
 *	  (the "base": type, properties, minimum, ...), its $ref target, each
 *	  allOf branch, its anyOf, its oneOf and its not.  The writer must fit
 *	  each part.
 *	- A writer schema with such parts is an intersection: it fits when one
 *	  of its parts fits (its base, its $ref target, an allOf branch, its
 *	  anyOf or oneOf as a whole: every branch fits).
 *	- Reader anyOf: the writer (or each of its types) fits one branch.
 *	  Reader oneOf: the same, and the other branches are provably disjoint
 *	  from that one or from the writer (different types, disjoint enums,
 *	  or a required property whose schemas are disjoint: a discriminator).
 *	  Reader not: the writer is provably disjoint from it.
 *	- Base against base, keyword by keyword, per type the writer can
 *	  produce; properties and items recurse with the JSON path tracked for
 *	  the messages.  A writer enum or const is a finite set: each value is
 *	  validated against the reader (validate()).
 *	- $ref resolves to #/$defs/<name> (or #) of its own document.  A pair
 *	  met again below a property or item is assumed to hold (values are
 *	  finite trees, so the assumption is discharged by induction); a pair
 *	  met again without descending is a cycle that is reported.
 *
 * Work is bounded: recursion depth (EB_COMPAT_MAX_DEPTH, and
 * check_stack_depth()), a budget of comparison steps (EB_COMPAT_MAX_STEPS)
 * and CHECK_FOR_INTERRUPTS() at every step.  Running out of either refuses
 * the change with a reason.  Everything is allocated in a memory context of
 * the call, deleted before returning; only the reasons are copied out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation_d.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "schema_compat.h"

#define EB_COMPAT_MAX_DEPTH		64
#define EB_COMPAT_MAX_STEPS		50000
#define EB_COMPAT_MAX_FRAMES	64
#define EB_COMPAT_MAX_REASONS	50

/* JSON value kinds, as a bit mask; "number" is T_INT | T_FRAC */
#define T_NULL		0x01
#define T_BOOL		0x02
#define T_OBJECT	0x04
#define T_ARRAY		0x08
#define T_STRING	0x10
#define T_INT		0x20
#define T_FRAC		0x40		/* numbers that are not integers */
#define T_NUMBER	(T_INT | T_FRAC)
#define T_ALL		0x7F

/*
 * A schema seen a certain way: whole (V_FULL), its plain keywords only
 * (V_BASE), or one of its combinator parts.  tmask restricts the values to
 * some types (a writer split by type for a reader's anyOf/oneOf).
 */
typedef enum ViewKind
{
	V_FULL,
	V_BASE,
	V_REF,
	V_ANYOF,
	V_ONEOF,
	V_NOT
} ViewKind;

typedef struct View
{
	JsonbValue *s;				/* jbvBool, or jbvBinary holding an object */
	JsonbValue *root;			/* its document, for $ref */
	ViewKind	k;
	uint8		tmask;
} View;

/* a $ref pair being compared, for recursion */
typedef struct RefFrame
{
	JsonbValue *w;
	JsonbValue *r;
	int			descents;
} RefFrame;

typedef struct Ctx
{
	List	   *reasons;
	bool		fwd;			/* the reader is the older schema */
	bool		defs_equal;		/* both documents have the same $defs */
	int			depth;
	int			steps;
	int			descents;		/* properties/items entered */
	bool		exhausted;
	bool		too_deep;
	int			nframes;
	RefFrame	frames[EB_COMPAT_MAX_FRAMES];
	StringInfoData path;
} Ctx;

typedef enum VRes
{
	VR_NO,
	VR_YES,
	VR_MAYBE
} VRes;

static const char *const base_keywords[] = {
	"type", "properties", "required", "additionalProperties", "items",
	"prefixItems", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
	"exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern",
	"minItems", "maxItems", "uniqueItems", "format", NULL
};
static const char *const combinator_keywords[] = {
	"$ref", "allOf", "anyOf", "oneOf", "not", NULL
};
static const char *const ignored_keywords[] = {
	"title", "description", "$comment", "default", "examples", "$schema",
	"$id", "deprecated", "readOnly", "writeOnly", "$defs", NULL
};

/* which of old/new a message names: the writer is the old one unless fwd */
#define BF(c, b_, f_) ((c)->fwd ? (f_) : (b_))
#define OLDV(c, w, r) ((c)->fwd ? (r) : (w))
#define NEWV(c, w, r) ((c)->fwd ? (w) : (r))
#define WRITER(c) ((c)->fwd ? "new" : "old")

static void sub(Ctx *c, View w, View r);
static bool try_sub(Ctx *c, View w, View r);
static bool disjoint(Ctx *c, View a, View b);
static VRes validate(Ctx *c, JsonbValue *v, View s, StringInfo why);

/* ---------------------------------------------------------------- */
/* Small helpers													*/
/* ---------------------------------------------------------------- */

static void add_reason(Ctx *c, const char *fmt,...) pg_attribute_printf(2, 3);

static void
add_reason(Ctx *c, const char *fmt,...)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (c->path.len > 1)
		appendStringInfo(&buf, "%s: ", c->path.data);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	c->reasons = lappend(c->reasons, buf.data);
}

static bool
in_list(const char *const *list, const char *s, int len)
{
	for (; *list; list++)
		if ((int) strlen(*list) == len && memcmp(*list, s, len) == 0)
			return true;
	return false;
}

static bool
is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
is_array(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

static bool
is_bool_schema(JsonbValue *v, bool val)
{
	return v != NULL && v->type == jbvBool && v->val.boolean == val;
}

/* a keyword of a schema object, or NULL */
static JsonbValue *
kw(JsonbValue *s, const char *name)
{
	JsonbValue *res;

	if (!is_object(s))
		return NULL;
	res = palloc(sizeof(JsonbValue));
	if (!getKeyJsonValueFromContainer(s->val.binary.data, name, strlen(name), res))
	{
		pfree(res);
		return NULL;
	}
	return res;
}

static JsonbValue *
kwn(JsonbValue *s, const char *name, int len)
{
	JsonbValue *res;

	if (!is_object(s))
		return NULL;
	res = palloc(sizeof(JsonbValue));
	if (!getKeyJsonValueFromContainer(s->val.binary.data, name, len, res))
	{
		pfree(res);
		return NULL;
	}
	return res;
}

static int
array_len(JsonbValue *a)
{
	return is_array(a) ? JsonContainerSize(a->val.binary.data) : 0;
}

static JsonbValue *
array_elem(JsonbValue *a, int i)
{
	return getIthJsonbValueFromContainer(a->val.binary.data, i);
}

/* the keys and values of an object, in storage order */
static int
object_entries(JsonbValue *o, JsonbValue **keys, JsonbValue **vals)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			size;

	if (!is_object(o))
		return 0;
	size = JsonContainerSize(o->val.binary.data);
	*keys = palloc(sizeof(JsonbValue) * Max(size, 1));
	*vals = palloc(sizeof(JsonbValue) * Max(size, 1));
	it = JsonbIteratorInit(o->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			(*keys)[n] = v;
		else if (tok == WJB_VALUE)
			(*vals)[n++] = v;
	}
	return n;
}

static char *
value_text(JsonbValue *v)
{
	Jsonb	   *jb = JsonbValueToJsonb(v);

	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

static bool
values_equal(JsonbValue *a, JsonbValue *b)
{
	if (a->type == jbvBinary || b->type == jbvBinary)
		return a->type == jbvBinary && b->type == jbvBinary &&
			compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 NumericGetDatum(a->val.numeric),
													 NumericGetDatum(b->val.numeric))) == 0;
		default:
			return false;
	}
}

static int
ncmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

static Numeric
nint(int64 i)
{
	return DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(i)));
}

static char *
nstr(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

static bool
nintegral(Numeric n)
{
	Numeric		f = DatumGetNumeric(DirectFunctionCall1(numeric_floor,
														NumericGetDatum(n)));

	return ncmp(n, f) == 0;
}

/* a is a multiple of d (d > 0) */
static bool
nmultiple(Numeric a, Numeric d)
{
	Numeric		m = DatumGetNumeric(DirectFunctionCall2(numeric_mod,
														NumericGetDatum(a),
														NumericGetDatum(d)));

	return ncmp(m, nint(0)) == 0;
}

/*
 * A numeric keyword: 0 absent, 1 present (*out set), -1 malformed.  Counts
 * (minLength ...) must be non-negative integers, multipleOf positive.
 */
static int
kw_num(JsonbValue *s, const char *name, Numeric *out)
{
	JsonbValue *v = kw(s, name);
	bool		count = strncmp(name, "min", 3) == 0 || strncmp(name, "max", 3) == 0;

	if (v == NULL)
		return 0;
	if (v->type != jbvNumeric)
		return -1;
	/* minimum/maximum are not counts */
	if (strcmp(name, "minimum") == 0 || strcmp(name, "maximum") == 0)
		count = false;
	if (count && (!nintegral(v->val.numeric) || ncmp(v->val.numeric, nint(0)) < 0))
		return -1;
	if (strcmp(name, "multipleOf") == 0 && ncmp(v->val.numeric, nint(0)) <= 0)
		return -1;
	*out = v->val.numeric;
	return 1;
}

static int
kind_of(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return T_NULL;
		case jbvBool:
			return T_BOOL;
		case jbvString:
			return T_STRING;
		case jbvNumeric:
			return nintegral(v->val.numeric) ? T_INT : T_FRAC;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? T_OBJECT : T_ARRAY;
		default:
			return 0;
	}
}

static int
type_bit(const char *name, int len)
{
	static const struct
	{
		const char *name;
		int			bits;
	}			types[] = {
		{"null", T_NULL}, {"boolean", T_BOOL}, {"object", T_OBJECT},
		{"array", T_ARRAY}, {"string", T_STRING}, {"integer", T_INT},
		{"number", T_NUMBER}
	};

	for (int i = 0; i < lengthof(types); i++)
		if ((int) strlen(types[i].name) == len && memcmp(types[i].name, name, len) == 0)
			return types[i].bits;
	return -1;
}

/* the types a schema's "type" keyword allows, -1 if malformed */
static int
type_mask(JsonbValue *s)
{
	JsonbValue *t = kw(s, "type");
	int			mask = 0;

	if (t == NULL)
		return T_ALL;
	if (t->type == jbvString)
		return type_bit(t->val.string.val, t->val.string.len);
	if (!is_array(t))
		return -1;
	for (int i = 0; i < array_len(t); i++)
	{
		JsonbValue *e = array_elem(t, i);
		int			b;

		if (e->type != jbvString ||
			(b = type_bit(e->val.string.val, e->val.string.len)) < 0)
			return -1;
		mask |= b;
	}
	return mask;
}

static char *
mask_text(int m)
{
	StringInfoData buf;

	if ((m & T_ALL) == T_ALL)
		return "any";
	initStringInfo(&buf);
#define ADD_NAME(name) \
	appendStringInfo(&buf, "%s%s", buf.len > 0 ? " or " : "", name)
	if (m & T_NULL)
		ADD_NAME("null");
	if (m & T_BOOL)
		ADD_NAME("boolean");
	if (m & T_OBJECT)
		ADD_NAME("object");
	if (m & T_ARRAY)
		ADD_NAME("array");
	if ((m & T_NUMBER) == T_NUMBER)
		ADD_NAME("number");
	else if (m & T_INT)
		ADD_NAME("integer");
	else if (m & T_FRAC)
		ADD_NAME("non-integer number");
	if (m & T_STRING)
		ADD_NAME("string");
#undef ADD_NAME
	if (buf.len == 0)
		return "nothing";
	return buf.data;
}

/* the types a schema's values can have (as far as its base says) */
static int
value_mask(View *v)
{
	int			m;
	Numeric		d;

	if (is_bool_schema(v->s, false))
		return 0;
	m = type_mask(v->s);
	if (m < 0)
		m = T_ALL;
	/* a multiple of an integer is an integer */
	if (kw_num(v->s, "multipleOf", &d) == 1 && nintegral(d))
		m &= ~T_FRAC;
	return m & v->tmask;
}

/* classify an object schema's keywords */
static void
scan_keywords(JsonbValue *s, bool *has_base, bool *has_comb, List **unknown)
{
	JsonbValue *keys,
			   *vals;
	int			n = object_entries(s, &keys, &vals);

	*has_base = *has_comb = false;
	if (unknown)
		*unknown = NIL;
	for (int i = 0; i < n; i++)
	{
		char	   *k = keys[i].val.string.val;
		int			len = keys[i].val.string.len;

		if (in_list(base_keywords, k, len))
			*has_base = true;
		else if (in_list(combinator_keywords, k, len))
			*has_comb = true;
		else if (!in_list(ignored_keywords, k, len))
		{
			*has_base = true;	/* an unknown keyword may constrain */
			if (unknown)
				*unknown = lappend(*unknown, pnstrdup(k, len));
		}
	}
}

/* accepts every value (as far as the view goes) */
static bool
trivially_true(View *v)
{
	bool		has_base,
				has_comb;

	if (v->s->type == jbvBool)
		return v->s->val.boolean;
	if (!is_object(v->s))
		return false;
	scan_keywords(v->s, &has_base, &has_comb, NULL);
	if (v->k == V_BASE)
		return !has_base;
	if (v->k == V_FULL)
		return !has_base && !has_comb;
	return false;
}

static bool
contains_ref(JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	x;
	JsonbIteratorToken tok;

	if (v->type != jbvBinary)
		return false;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &x, false)) != WJB_DONE)
		if (tok == WJB_KEY && x.val.string.len == 4 &&
			memcmp(x.val.string.val, "$ref", 4) == 0)
			return true;
	return false;
}

static View
view(JsonbValue *s, JsonbValue *root, ViewKind k, uint8 tmask)
{
	View		v;

	v.s = s;
	v.root = root;
	v.k = k;
	v.tmask = tmask;
	return v;
}

/* resolve the $ref of a view to the whole target schema */
static bool
resolve_ref(View *v, View *out)
{
	JsonbValue *ref = kw(v->s, "$ref");
	const char *str;
	int			len;
	const char *prefix = "#/$defs/";
	int			plen = strlen(prefix);
	StringInfoData name;
	JsonbValue *defs,
			   *target;

	if (ref == NULL || ref->type != jbvString || v->root == NULL)
		return false;
	str = ref->val.string.val;
	len = ref->val.string.len;
	if (len == 1 && str[0] == '#')
	{
		*out = view(v->root, v->root, V_FULL, v->tmask);
		return true;
	}
	if (len <= plen || memcmp(str, prefix, plen) != 0)
		return false;
	initStringInfo(&name);
	for (int i = plen; i < len; i++)
	{
		if (str[i] == '/')
			return false;		/* deeper pointers are not supported */
		if (str[i] == '~' && i + 1 < len && (str[i + 1] == '0' || str[i + 1] == '1'))
		{
			appendStringInfoChar(&name, str[i + 1] == '0' ? '~' : '/');
			i++;
		}
		else
			appendStringInfoChar(&name, str[i]);
	}
	defs = kw(v->root, "$defs");
	if (defs == NULL || !is_object(defs))
		return false;
	target = kwn(defs, name.data, name.len);
	if (target == NULL)
		return false;
	*out = view(target, v->root, V_FULL, v->tmask);
	return true;
}

/* the parts of a whole schema that has combinators; see the file header */
static List *
parts_of(View *v)
{
	List	   *parts = NIL;
	bool		has_base,
				has_comb;
	JsonbValue *x;
	View	   *p;

#define ADD_PART(s_, k_) \
	do { p = palloc(sizeof(View)); *p = view((s_), v->root, (k_), v->tmask); \
		 parts = lappend(parts, p); } while (0)

	scan_keywords(v->s, &has_base, &has_comb, NULL);
	if (has_base)
		ADD_PART(v->s, V_BASE);
	if (kw(v->s, "$ref"))
		ADD_PART(v->s, V_REF);
	if ((x = kw(v->s, "allOf")) != NULL)
	{
		if (!is_array(x))
			ADD_PART(v->s, V_BASE); /* reported as malformed there */
		for (int i = 0; i < array_len(x); i++)
			ADD_PART(array_elem(x, i), V_FULL);
	}
	if (kw(v->s, "anyOf"))
		ADD_PART(v->s, V_ANYOF);
	if (kw(v->s, "oneOf"))
		ADD_PART(v->s, V_ONEOF);
	if (kw(v->s, "not"))
		ADD_PART(v->s, V_NOT);
#undef ADD_PART
	return parts;
}

static bool
has_combinators(View *v)
{
	bool		has_base,
				has_comb;

	if (!is_object(v->s))
		return false;
	scan_keywords(v->s, &has_base, &has_comb, NULL);
	return has_comb;
}

/* the branches of an anyOf/oneOf view; NULL if malformed */
static JsonbValue *
branches(View *v)
{
	JsonbValue *b = kw(v->s, v->k == V_ANYOF ? "anyOf" : "oneOf");

	return (b && is_array(b) && array_len(b) > 0) ? b : NULL;
}

/* ---------------------------------------------------------------- */
/* Paths and bounds													*/
/* ---------------------------------------------------------------- */

static int
path_push_name(Ctx *c, const char *name, int len)
{
	int			save = c->path.len;
	bool		ident = len > 0 && !isdigit((unsigned char) name[0]);

	for (int i = 0; i < len && ident; i++)
		ident = isalnum((unsigned char) name[i]) || name[i] == '_';
	if (ident)
		appendStringInfo(&c->path, ".%.*s", len, name);
	else
	{
		appendStringInfoString(&c->path, "[\"");
		for (int i = 0; i < len; i++)
		{
			if (name[i] == '"' || name[i] == '\\')
				appendStringInfoChar(&c->path, '\\');
			appendStringInfoChar(&c->path, name[i]);
		}
		appendStringInfoString(&c->path, "\"]");
	}
	c->descents++;
	return save;
}

static int
path_push(Ctx *c, const char *fmt, int i)
{
	int			save = c->path.len;

	appendStringInfo(&c->path, fmt, i);
	c->descents++;
	return save;
}

static void
path_pop(Ctx *c, int save)
{
	c->path.len = save;
	c->path.data[save] = '\0';
	c->descents--;
}

/* one step of work; false when a bound is reached */
static bool
enter(Ctx *c)
{
	CHECK_FOR_INTERRUPTS();
	check_stack_depth();
	if (++c->steps > EB_COMPAT_MAX_STEPS)
	{
		c->exhausted = true;
		return false;
	}
	if (c->depth >= EB_COMPAT_MAX_DEPTH)
	{
		c->too_deep = true;
		return false;
	}
	c->depth++;
	return true;
}

/* ---------------------------------------------------------------- */
/* Validation of one concrete value (enum and const members)		*/
/* ---------------------------------------------------------------- */

static VRes
vand(VRes a, VRes b)
{
	if (a == VR_NO || b == VR_NO)
		return VR_NO;
	if (a == VR_MAYBE || b == VR_MAYBE)
		return VR_MAYBE;
	return VR_YES;
}

static void
set_why(StringInfo why, const char *fmt,...) pg_attribute_printf(2, 3);

static void
set_why(StringInfo why, const char *fmt,...)
{
	if (why == NULL || why->len > 0)
		return;					/* keep the first */
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(why, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(why, needed);
	}
}

static VRes
validate_base(Ctx *c, JsonbValue *v, View s, StringInfo why)
{
	JsonbValue *s_ = s.s;
	JsonbValue *x;
	int			kind = kind_of(v);
	int			tm = type_mask(s_);
	VRes		res = VR_YES;
	List	   *unknown;
	bool		has_base,
				has_comb;
	Numeric		n;

	scan_keywords(s_, &has_base, &has_comb, &unknown);
	if (unknown != NIL)
	{
		set_why(why, "keyword \"%s\"", (char *) linitial(unknown));
		res = VR_MAYBE;
	}
	if (tm < 0)
	{
		set_why(why, "malformed type");
		return VR_MAYBE;
	}
	if (!(kind & tm) && !(kind == T_INT && (tm & T_INT)))
	{
		set_why(why, "type %s", mask_text(tm));
		return VR_NO;
	}
	if ((x = kw(s_, "const")) != NULL && !values_equal(v, x))
	{
		set_why(why, "const %s", value_text(x));
		return VR_NO;
	}
	if ((x = kw(s_, "enum")) != NULL)
	{
		bool		found = false;

		for (int i = 0; i < array_len(x) && !found; i++)
			found = values_equal(v, array_elem(x, i));
		if (!found)
		{
			set_why(why, "not in enum");
			return VR_NO;
		}
	}
	if (kind & T_NUMBER)
	{
		Numeric		num = v->val.numeric;
		static const char *const bounds[] = {"minimum", "exclusiveMinimum",
		"maximum", "exclusiveMaximum"};

		for (int b = 0; b < 4; b++)
		{
			int			r = kw_num(s_, bounds[b], &n);
			int			cmp;
			bool		bad;

			if (r < 0)
				res = vand(res, VR_MAYBE);
			if (r != 1)
				continue;
			cmp = ncmp(num, n);
			bad = (b == 0 && cmp < 0) || (b == 1 && cmp <= 0) ||
				(b == 2 && cmp > 0) || (b == 3 && cmp >= 0);
			if (bad)
			{
				set_why(why, "%s %s", bounds[b], nstr(n));
				return VR_NO;
			}
		}
		if (kw_num(s_, "multipleOf", &n) == 1 && !nmultiple(num, n))
		{
			set_why(why, "multipleOf %s", nstr(n));
			return VR_NO;
		}
	}
	if (kind == T_STRING)
	{
		int			len = pg_mbstrlen_with_len(v->val.string.val, v->val.string.len);

		if (kw_num(s_, "minLength", &n) == 1 && ncmp(nint(len), n) < 0)
		{
			set_why(why, "minLength %s", nstr(n));
			return VR_NO;
		}
		if (kw_num(s_, "maxLength", &n) == 1 && ncmp(nint(len), n) > 0)
		{
			set_why(why, "maxLength %s", nstr(n));
			return VR_NO;
		}
		if ((x = kw(s_, "pattern")) != NULL)
		{
			if (x->type != jbvString)
				res = vand(res, VR_MAYBE);
			else if (!DatumGetBool(DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
														   PointerGetDatum(cstring_to_text_with_len(v->val.string.val, v->val.string.len)),
														   PointerGetDatum(cstring_to_text_with_len(x->val.string.val, x->val.string.len)))))
			{
				set_why(why, "pattern %s", value_text(x));
				return VR_NO;
			}
		}
		if (kw(s_, "format") != NULL)
		{
			set_why(why, "format");
			res = vand(res, VR_MAYBE);
		}
	}
	if (kind == T_ARRAY)
	{
		int			len = array_len(v);
		JsonbValue *prefix = kw(s_, "prefixItems");
		JsonbValue *items = kw(s_, "items");
		int			np = prefix ? array_len(prefix) : 0;

		if (kw_num(s_, "minItems", &n) == 1 && ncmp(nint(len), n) < 0)
		{
			set_why(why, "minItems %s", nstr(n));
			return VR_NO;
		}
		if (kw_num(s_, "maxItems", &n) == 1 && ncmp(nint(len), n) > 0)
		{
			set_why(why, "maxItems %s", nstr(n));
			return VR_NO;
		}
		for (int i = 0; i < len && res != VR_NO; i++)
		{
			JsonbValue *is = i < np ? array_elem(prefix, i) : items;

			if (is != NULL)
				res = vand(res, validate(c, array_elem(v, i),
										 view(is, s.root, V_FULL, T_ALL), why));
		}
		if ((x = kw(s_, "uniqueItems")) != NULL && x->type == jbvBool && x->val.boolean)
		{
			for (int i = 0; i < len && res != VR_NO; i++)
				for (int j = i + 1; j < len; j++)
					if (values_equal(array_elem(v, i), array_elem(v, j)))
					{
						set_why(why, "uniqueItems");
						return VR_NO;
					}
		}
	}
	if (kind == T_OBJECT)
	{
		JsonbValue *req = kw(s_, "required");
		JsonbValue *props = kw(s_, "properties");
		JsonbValue *addl = kw(s_, "additionalProperties");
		JsonbValue *keys,
				   *vals;
		int			nk;

		for (int i = 0; i < array_len(req); i++)
		{
			JsonbValue *name = array_elem(req, i);

			if (name->type == jbvString &&
				!kwn(v, name->val.string.val, name->val.string.len))
			{
				set_why(why, "required property \"%.*s\"", name->val.string.len,
						name->val.string.val);
				return VR_NO;
			}
		}
		nk = object_entries(v, &keys, &vals);
		for (int i = 0; i < nk && res != VR_NO; i++)
		{
			JsonbValue *ps = props ? kwn(props, keys[i].val.string.val,
										 keys[i].val.string.len) : NULL;

			if (ps == NULL)
				ps = addl;
			if (ps != NULL)
				res = vand(res, validate(c, &vals[i], view(ps, s.root, V_FULL, T_ALL), why));
		}
	}
	return res;
}

/* is value v valid under schema s (whole, or its base) */
static VRes
validate(Ctx *c, JsonbValue *v, View s, StringInfo why)
{
	VRes		res = VR_YES;
	JsonbValue *x;
	View		t;

	if (!enter(c))
		return VR_MAYBE;
	if (s.s->type == jbvBool)
	{
		c->depth--;
		if (!s.s->val.boolean)
			set_why(why, "false schema");
		return s.s->val.boolean ? VR_YES : VR_NO;
	}
	if (!is_object(s.s))
	{
		c->depth--;
		return VR_MAYBE;
	}
	res = validate_base(c, v, s, why);
	if (s.k == V_FULL && res != VR_NO)
	{
		if (kw(s.s, "$ref"))
			res = vand(res, resolve_ref(&s, &t) ? validate(c, v, t, why) : VR_MAYBE);
		if (res != VR_NO && (x = kw(s.s, "allOf")) != NULL)
			for (int i = 0; i < array_len(x) && res != VR_NO; i++)
				res = vand(res, validate(c, v, view(array_elem(x, i), s.root, V_FULL, T_ALL), why));
		if (res != VR_NO && (x = kw(s.s, "anyOf")) != NULL)
		{
			VRes		any = VR_NO;

			for (int i = 0; i < array_len(x) && any != VR_YES; i++)
			{
				VRes		b = validate(c, v, view(array_elem(x, i), s.root, V_FULL, T_ALL), NULL);

				if (b == VR_YES || (b == VR_MAYBE && any == VR_NO))
					any = b;
			}
			if (any == VR_NO)
				set_why(why, "anyOf");
			res = vand(res, any);
		}
		if (res != VR_NO && (x = kw(s.s, "oneOf")) != NULL)
		{
			int			yes = 0,
						maybe = 0;

			for (int i = 0; i < array_len(x); i++)
			{
				VRes		b = validate(c, v, view(array_elem(x, i), s.root, V_FULL, T_ALL), NULL);

				yes += b == VR_YES;
				maybe += b == VR_MAYBE;
			}
			if (yes > 1 || yes + maybe == 0)
			{
				set_why(why, "oneOf");
				res = VR_NO;
			}
			else
				res = vand(res, (yes == 1 && maybe == 0) ? VR_YES : VR_MAYBE);
		}
		if (res != VR_NO && (x = kw(s.s, "not")) != NULL)
		{
			VRes		b = validate(c, v, view(x, s.root, V_FULL, T_ALL), NULL);

			if (b == VR_YES)
				set_why(why, "not");
			res = vand(res, b == VR_YES ? VR_NO : b == VR_NO ? VR_YES : VR_MAYBE);
		}
	}
	c->depth--;
	return res;
}

/* ---------------------------------------------------------------- */
/* Disjointness: no value is valid under both (sound, not complete) */
/* ---------------------------------------------------------------- */

/* the finite set of values of a base, or NULL */
static JsonbValue *
finite_values(JsonbValue *s, int *n)
{
	JsonbValue *x;

	if ((x = kw(s, "const")) != NULL)
	{
		*n = 1;
		return x;
	}
	if ((x = kw(s, "enum")) != NULL && is_array(x))
	{
		*n = array_len(x);
		return x;
	}
	return NULL;
}

static JsonbValue *
finite_value(JsonbValue *s, JsonbValue *set, int i)
{
	return kw(s, "const") ? set : array_elem(set, i);
}

/* the schema of property `name` of an object base */
static JsonbValue *
prop_schema(JsonbValue *s, const char *name, int len, bool *declared)
{
	JsonbValue *props = kw(s, "properties");
	JsonbValue *p = props ? kwn(props, name, len) : NULL;
	static JsonbValue true_schema = {.type = jbvBool,.val.boolean = true};

	*declared = p != NULL;
	if (p == NULL)
		p = kw(s, "additionalProperties");
	return p ? p : &true_schema;
}

static bool
disjoint_base(Ctx *c, View a, View b)
{
	int			n;
	JsonbValue *set;
	int			common;

	for (int side = 0; side < 2; side++)
	{
		View		x = side ? b : a;
		View		y = side ? a : b;

		if ((set = finite_values(x.s, &n)) != NULL)
		{
			bool		all_out = true;

			for (int i = 0; i < n && all_out; i++)
			{
				JsonbValue *v = finite_value(x.s, set, i);

				all_out = validate(c, v, y, NULL) == VR_NO;
			}
			if (all_out)
				return true;
		}
	}
	common = value_mask(&a) & value_mask(&b);
	if (common == 0)
		return true;
	if (common == T_OBJECT)
	{
		for (int side = 0; side < 2; side++)
		{
			View		x = side ? b : a;
			View		y = side ? a : b;
			JsonbValue *req = kw(x.s, "required");

			for (int i = 0; i < array_len(req); i++)
			{
				JsonbValue *name = array_elem(req, i);
				bool		dx,
							dy;
				JsonbValue *px,
						   *py;

				if (name->type != jbvString)
					continue;
				px = prop_schema(x.s, name->val.string.val, name->val.string.len, &dx);
				py = prop_schema(y.s, name->val.string.val, name->val.string.len, &dy);
				if (disjoint(c, view(px, x.root, V_FULL, T_ALL),
							 view(py, y.root, V_FULL, T_ALL)))
					return true;
			}
		}
	}
	return false;
}

/* one side split into its parts: disjoint if one part is (or, for a union, all are) */
static bool
disjoint_parts(Ctx *c, View a, View b, bool *decided)
{
	View		t;
	JsonbValue *br;
	ListCell   *lc;

	*decided = true;
	switch (a.k)
	{
		case V_FULL:
			if (!has_combinators(&a))
			{
				*decided = false;
				return false;
			}
			foreach(lc, parts_of(&a))
			{
				if (disjoint(c, *(View *) lfirst(lc), b))
					return true;
			}
			return false;
		case V_REF:
			return resolve_ref(&a, &t) && disjoint(c, t, b);
		case V_ANYOF:
		case V_ONEOF:
			if ((br = branches(&a)) == NULL)
				return false;
			for (int i = 0; i < array_len(br); i++)
				if (!disjoint(c, view(array_elem(br, i), a.root, V_FULL, a.tmask), b))
					return false;
			return true;
		case V_NOT:
			/* not N and b are disjoint when b fits N */
			return try_sub(c, b, view(kw(a.s, "not"), a.root, V_FULL, T_ALL));
		case V_BASE:
			*decided = false;
			return false;
	}
	return false;
}

static bool
disjoint(Ctx *c, View a, View b)
{
	bool		res;
	bool		decided;

	if (!enter(c))
		return false;
	if (is_bool_schema(a.s, false) || is_bool_schema(b.s, false))
		res = true;
	else if (a.s->type == jbvBool || b.s->type == jbvBool)
		res = false;
	else
	{
		res = disjoint_parts(c, a, b, &decided);
		if (!decided && !res)
			res = disjoint_parts(c, b, a, &decided);
		if (!decided && !res)
		{
			if (a.k == V_FULL)
				a.k = V_BASE;
			if (b.k == V_FULL)
				b.k = V_BASE;
			res = disjoint_base(c, a, b);
		}
	}
	c->depth--;
	return res;
}

/* ---------------------------------------------------------------- */
/* Base against base												*/
/* ---------------------------------------------------------------- */

/*
 * One lower (or upper) bound of the reader against the writer's.  The
 * writer's bounds: incl (minimum/maximum), excl (exclusive*).
 */
static void
cmp_bound(Ctx *c, bool lower, const char *rkw, Numeric rb, bool rexcl,
		  const char *wkw_incl, Numeric wincl, const char *wkw_excl, Numeric wexcl)
{
	int			sign = lower ? 1 : -1;
	bool		ok;
	const char *wkw;
	Numeric		wb;

	ok = (wincl && (rexcl ? sign * ncmp(wincl, rb) > 0 : sign * ncmp(wincl, rb) >= 0)) ||
		(wexcl && sign * ncmp(wexcl, rb) >= 0);
	if (ok)
		return;
	if (!wincl && !wexcl)
	{
		add_reason(c, BF(c, "%s %s was added", "%s %s was removed"), rkw, nstr(rb));
		return;
	}
	/* the writer's tighter bound */
	if (wincl && (!wexcl || sign * ncmp(wincl, wexcl) > 0))
		wkw = wkw_incl, wb = wincl;
	else
		wkw = wkw_excl, wb = wexcl;
	if (strcmp(wkw, rkw) == 0)
		add_reason(c, "%s %s from %s to %s", rkw,
				   (lower != c->fwd) ? "raised" : "lowered",
				   nstr(OLDV(c, wb, rb)), nstr(NEWV(c, wb, rb)));
	else
		add_reason(c, "%s bound %s from %s %s to %s %s", lower ? "lower" : "upper",
				   c->fwd ? "loosened" : "tightened",
				   OLDV(c, wkw, rkw), nstr(OLDV(c, wb, rb)),
				   NEWV(c, wkw, rkw), nstr(NEWV(c, wb, rb)));
}

/* a count (minLength, maxItems ...): the writer's w (NULL: none) against r */
static void
cmp_count(Ctx *c, bool lower, const char *name, Numeric w, Numeric r)
{
	if (w == NULL && lower && ncmp(r, nint(0)) <= 0)
		return;
	if (w != NULL && (lower ? ncmp(w, r) >= 0 : ncmp(w, r) <= 0))
		return;
	if (w == NULL)
		add_reason(c, BF(c, "%s %s was added", "%s %s was removed"), name, nstr(r));
	else
		add_reason(c, "%s %s from %s to %s", name,
				   (lower != c->fwd) ? "raised" : "lowered",
				   nstr(OLDV(c, w, r)), nstr(NEWV(c, w, r)));
}

static Numeric
opt_num(JsonbValue *s, const char *name)
{
	Numeric		n;

	return kw_num(s, name, &n) == 1 ? n : NULL;
}

static void
malformed(Ctx *c, JsonbValue *s, const char *name)
{
	Numeric		n;

	if (kw_num(s, name, &n) < 0)
		add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible", name);
}

static void
cmp_numbers(Ctx *c, View *w, View *r, int wm)
{
	JsonbValue *ws = w->s,
			   *rs = r->s;
	Numeric		rb,
				d;

	malformed(c, rs, "minimum");
	malformed(c, rs, "exclusiveMinimum");
	malformed(c, rs, "maximum");
	malformed(c, rs, "exclusiveMaximum");
	malformed(c, rs, "multipleOf");
	if ((rb = opt_num(rs, "minimum")) != NULL)
		cmp_bound(c, true, "minimum", rb, false, "minimum", opt_num(ws, "minimum"),
				  "exclusiveMinimum", opt_num(ws, "exclusiveMinimum"));
	if ((rb = opt_num(rs, "exclusiveMinimum")) != NULL)
		cmp_bound(c, true, "exclusiveMinimum", rb, true, "minimum", opt_num(ws, "minimum"),
				  "exclusiveMinimum", opt_num(ws, "exclusiveMinimum"));
	if ((rb = opt_num(rs, "maximum")) != NULL)
		cmp_bound(c, false, "maximum", rb, false, "maximum", opt_num(ws, "maximum"),
				  "exclusiveMaximum", opt_num(ws, "exclusiveMaximum"));
	if ((rb = opt_num(rs, "exclusiveMaximum")) != NULL)
		cmp_bound(c, false, "exclusiveMaximum", rb, true, "maximum", opt_num(ws, "maximum"),
				  "exclusiveMaximum", opt_num(ws, "exclusiveMaximum"));
	if ((d = opt_num(rs, "multipleOf")) != NULL)
	{
		Numeric		wd = opt_num(ws, "multipleOf");
		Numeric		step = wd ? wd : (!(wm & T_FRAC) ? nint(1) : NULL);

		if (step == NULL || !nmultiple(step, d))
		{
			if (wd == NULL)
				add_reason(c, BF(c, "multipleOf %s was added", "multipleOf %s was removed"),
						   nstr(d));
			else
				add_reason(c, "multipleOf changed from %s to %s",
						   nstr(OLDV(c, wd, d)), nstr(NEWV(c, wd, d)));
		}
	}
}

/* pattern and format: equal, or a reason */
static void
cmp_same_string(Ctx *c, JsonbValue *ws, JsonbValue *rs, const char *name)
{
	JsonbValue *rv = kw(rs, name);
	JsonbValue *wv = kw(ws, name);

	if (rv == NULL || (wv != NULL && values_equal(wv, rv)))
		return;
	if (wv == NULL)
		add_reason(c, BF(c, "%s %s was added", "%s %s was removed"), name, value_text(rv));
	else
		add_reason(c, "%s changed from %s to %s; cannot be shown compatible", name,
				   value_text(OLDV(c, wv, rv)), value_text(NEWV(c, wv, rv)));
}

static void
cmp_strings(Ctx *c, View *w, View *r)
{
	Numeric		n;

	malformed(c, r->s, "minLength");
	malformed(c, r->s, "maxLength");
	if ((n = opt_num(r->s, "minLength")) != NULL)
		cmp_count(c, true, "minLength", opt_num(w->s, "minLength"), n);
	if ((n = opt_num(r->s, "maxLength")) != NULL)
		cmp_count(c, false, "maxLength", opt_num(w->s, "maxLength"), n);
	cmp_same_string(c, w->s, r->s, "pattern");
	cmp_same_string(c, w->s, r->s, "format");
}

static void
cmp_arrays(Ctx *c, View *w, View *r)
{
	JsonbValue *ws = w->s,
			   *rs = r->s;
	JsonbValue *wprefix = kw(ws, "prefixItems"),
			   *rprefix = kw(rs, "prefixItems");
	JsonbValue *witems = kw(ws, "items"),
			   *ritems = kw(rs, "items");
	int			nw = wprefix ? array_len(wprefix) : 0;
	int			nr = rprefix ? array_len(rprefix) : 0;
	Numeric		wmax = opt_num(ws, "maxItems");
	Numeric		n;
	JsonbValue *x;
	static JsonbValue true_schema = {.type = jbvBool,.val.boolean = true};

	malformed(c, rs, "minItems");
	malformed(c, rs, "maxItems");
	if ((rprefix && !is_array(rprefix)) || (ritems && is_array(ritems)))
		add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
				   (ritems && is_array(ritems)) ? "items" : "prefixItems");
	/* items: false after the prefix bounds the length */
	if (witems && is_bool_schema(witems, false) && (wmax == NULL || ncmp(nint(nw), wmax) < 0))
		wmax = nint(nw);
	if ((n = opt_num(rs, "minItems")) != NULL)
		cmp_count(c, true, "minItems", opt_num(ws, "minItems"), n);
	if ((n = opt_num(rs, "maxItems")) != NULL)
		cmp_count(c, false, "maxItems", wmax, n);
	if ((x = kw(rs, "uniqueItems")) != NULL && x->type == jbvBool && x->val.boolean)
	{
		JsonbValue *wu = kw(ws, "uniqueItems");

		if (!(wu && wu->type == jbvBool && wu->val.boolean) &&
			!(wmax && ncmp(wmax, nint(1)) <= 0))
			add_reason(c, BF(c, "uniqueItems was added", "uniqueItems was removed"));
	}
	if (witems && is_array(witems))
		witems = NULL;			/* not 2020-12: ignoring it only widens the writer */
	if (!witems)
		witems = &true_schema;
	if (!ritems || is_array(ritems))
		ritems = &true_schema;

	/* position by position, then the rest */
	for (int i = 0; i < Max(nw, nr); i++)
	{
		JsonbValue *wi = i < nw ? array_elem(wprefix, i) : witems;
		JsonbValue *ri = i < nr ? array_elem(rprefix, i) : ritems;
		int			save;

		if (wmax && ncmp(nint(i), wmax) >= 0)
			break;
		save = path_push(c, "[%d]", i);
		if (i >= nr && is_bool_schema(ri, false) && !is_bool_schema(wi, false))
			add_reason(c, BF(c, "item %d is no longer allowed (items: false)",
							 "item %d was added but the old schema allows no more items (items: false)"),
					   i);
		else
			sub(c, view(wi, w->root, V_FULL, T_ALL), view(ri, r->root, V_FULL, T_ALL));
		path_pop(c, save);
	}
	if (!(wmax && ncmp(nint(Max(nw, nr)), wmax) >= 0))
	{
		int			save = path_push(c, "[*]", 0);

		if (is_bool_schema(ritems, false) && !is_bool_schema(witems, false))
		{
			path_pop(c, save);
			add_reason(c, BF(c, "items after the first %d are no longer allowed (items: false)",
							 "more than %d items are allowed but the old schema refuses them (items: false)"),
					   nr);
		}
		else
		{
			sub(c, view(witems, w->root, V_FULL, T_ALL), view(ritems, r->root, V_FULL, T_ALL));
			path_pop(c, save);
		}
	}
}

static bool
name_in(JsonbValue *arr, JsonbValue *name)
{
	for (int i = 0; i < array_len(arr); i++)
		if (values_equal(array_elem(arr, i), name))
			return true;
	return false;
}

/* additionalProperties absent or true */
static bool
open_model(JsonbValue *addl)
{
	return addl == NULL || is_bool_schema(addl, true) ||
		(is_object(addl) && trivially_true(&(View) {addl, NULL, V_FULL, T_ALL}));
}

static void
cmp_objects(Ctx *c, View *w, View *r)
{
	JsonbValue *ws = w->s,
			   *rs = r->s;
	JsonbValue *wreq = kw(ws, "required"),
			   *rreq = kw(rs, "required");
	JsonbValue *wprops = kw(ws, "properties"),
			   *rprops = kw(rs, "properties");
	JsonbValue *waddl = kw(ws, "additionalProperties"),
			   *raddl = kw(rs, "additionalProperties");
	JsonbValue *keys,
			   *vals;
	int			n;
	static JsonbValue true_schema = {.type = jbvBool,.val.boolean = true};

	if ((rreq && !is_array(rreq)) || (rprops && !is_object(rprops)))
		add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
				   (rreq && !is_array(rreq)) ? "required" : "properties");
	for (int i = 0; i < array_len(rreq); i++)
	{
		JsonbValue *name = array_elem(rreq, i);

		if (name->type == jbvString && !name_in(wreq, name))
			add_reason(c, BF(c, "property \"%.*s\" became required",
							 "property \"%.*s\" is no longer required"),
					   name->val.string.len, name->val.string.val);
	}

	/* the reader's declared properties */
	n = object_entries(rprops, &keys, &vals);
	for (int i = 0; i < n; i++)
	{
		char	   *k = keys[i].val.string.val;
		int			klen = keys[i].val.string.len;
		JsonbValue *wp = wprops ? kwn(wprops, k, klen) : NULL;
		View		rv = view(&vals[i], r->root, V_FULL, T_ALL);
		int			save;

		if (wp == NULL)
		{
			if (is_bool_schema(waddl ? waddl : &true_schema, false))
				continue;		/* the writer never has it */
			if (open_model(waddl))
			{
				if (!trivially_true(&rv))
					add_reason(c, BF(c, "property \"%.*s\" was added to an open content model (additionalProperties absent or true), where old events may hold any value under that name",
									 "property \"%.*s\" was removed while the new content model is open (additionalProperties absent or true), so new events may hold any value under that name"),
							   klen, k);
				continue;
			}
			wp = waddl;
		}
		save = path_push_name(c, k, klen);
		sub(c, view(wp, w->root, V_FULL, T_ALL), rv);
		path_pop(c, save);
	}

	/* the writer's properties the reader does not declare */
	n = object_entries(wprops, &keys, &vals);
	for (int i = 0; i < n; i++)
	{
		char	   *k = keys[i].val.string.val;
		int			klen = keys[i].val.string.len;
		int			save;

		if (rprops && kwn(rprops, k, klen))
			continue;
		if (open_model(raddl) || is_bool_schema(&vals[i], false))
			continue;
		if (is_bool_schema(raddl, false))
		{
			add_reason(c, BF(c, "property \"%.*s\" was removed from a closed content model (additionalProperties: false)",
							 "property \"%.*s\" was added but the old content model is closed (additionalProperties: false)"),
					   klen, k);
			continue;
		}
		save = path_push_name(c, k, klen);
		sub(c, view(&vals[i], w->root, V_FULL, T_ALL), view(raddl, r->root, V_FULL, T_ALL));
		path_pop(c, save);
	}

	/* every other name */
	if (!open_model(raddl) && !is_bool_schema(waddl ? waddl : &true_schema, false))
	{
		if (is_bool_schema(raddl, false))
			add_reason(c, BF(c, "additionalProperties: false was added (the content model was closed)",
							 "additionalProperties: false was removed (the content model was opened)"));
		else
		{
			int			save = path_push(c, ".*", 0);

			sub(c, view(waddl ? waddl : &true_schema, w->root, V_FULL, T_ALL),
				view(raddl, r->root, V_FULL, T_ALL));
			path_pop(c, save);
		}
	}
}

static void
report_value(Ctx *c, JsonbValue *v, bool is_const, bool reader_enum, VRes res, StringInfo why)
{
	char	   *vt = value_text(v);
	const char *what = is_const ? "const value" : "enum value";

	if (res == VR_MAYBE)
		add_reason(c, "%s %s cannot be shown valid (%s)", what, vt, why->data);
	else if (reader_enum && strcmp(why->data, "not in enum") == 0)
		add_reason(c, BF(c, "enum value %s was removed", "enum value %s was added"), vt);
	else
		add_reason(c, BF(c, "%s %s is no longer valid (%s)",
						 "%s %s was added but the old schema refuses it (%s)"),
				   what, vt, why->data);
}

static void
cmp_base(Ctx *c, View *w, View *r)
{
	List	   *unknown;
	bool		has_base,
				has_comb;
	int			wm,
				rm;
	JsonbValue *set;
	int			n;
	ListCell   *lc;

	scan_keywords(r->s, &has_base, &has_comb, &unknown);
	foreach(lc, unknown)
		add_reason(c, "keyword \"%s\" is not supported; cannot be shown compatible",
				   (char *) lfirst(lc));

	wm = value_mask(w);
	if (wm == 0)
		return;

	/* a finite writer: each of its values */
	if ((set = finite_values(w->s, &n)) != NULL)
	{
		bool		is_const = kw(w->s, "const") != NULL;
		bool		reader_enum = kw(r->s, "enum") != NULL;

		for (int i = 0; i < n; i++)
		{
			JsonbValue *v = finite_value(w->s, set, i);
			StringInfoData why;
			VRes		res;

			if (!(kind_of(v) & w->tmask) ||
				validate(c, v, view(w->s, w->root, V_BASE, T_ALL), NULL) == VR_NO)
				continue;
			initStringInfo(&why);
			res = validate(c, v, *r, &why);
			if (res != VR_YES)
				report_value(c, v, is_const, reader_enum, res, &why);
		}
		return;
	}

	/* a finite reader: the writer must be finite too (null, booleans) */
	if (finite_values(r->s, &n) != NULL)
	{
		JsonbValue	cand[3];
		const char *what = kw(r->s, "const") ? "const" : "enum";

		if (wm & ~(T_NULL | T_BOOL))
		{
			add_reason(c, BF(c, "%s was added", "%s was removed"), what);
			return;
		}
		cand[0].type = jbvNull;
		cand[1].type = jbvBool;
		cand[1].val.boolean = false;
		cand[2].type = jbvBool;
		cand[2].val.boolean = true;
		for (int i = 0; i < 3; i++)
		{
			StringInfoData why;
			VRes		res;

			if (!(kind_of(&cand[i]) & wm) ||
				validate(c, &cand[i], view(w->s, w->root, V_BASE, T_ALL), NULL) == VR_NO)
				continue;
			initStringInfo(&why);
			res = validate(c, &cand[i], *r, &why);
			if (res == VR_MAYBE)
				add_reason(c, "value %s cannot be shown valid (%s)", value_text(&cand[i]), why.data);
			else if (res == VR_NO)
				add_reason(c, BF(c, "value %s is no longer valid (%s)",
								 "value %s is allowed but the old schema refuses it (%s)"),
						   value_text(&cand[i]), why.data);
		}
		return;
	}

	rm = type_mask(r->s);
	if (rm < 0)
	{
		add_reason(c, "keyword \"type\" has an invalid value; cannot be shown compatible");
		return;
	}
	if (wm & ~rm)
		add_reason(c, "type changed from %s to %s",
				   mask_text(OLDV(c, wm, rm)), mask_text(NEWV(c, wm, rm)));
	wm &= rm;
	if (wm & T_NUMBER)
		cmp_numbers(c, w, r, wm);
	if (wm & T_STRING)
		cmp_strings(c, w, r);
	if (wm & T_ARRAY)
		cmp_arrays(c, w, r);
	if (wm & T_OBJECT)
		cmp_objects(c, w, r);
}

/* ---------------------------------------------------------------- */
/* The inclusion test												*/
/* ---------------------------------------------------------------- */

/* the writer (a base) fits a reader anyOf/oneOf: one branch, or one per type */
static bool
fits_union(Ctx *c, View w, View r, bool split)
{
	JsonbValue *br = branches(&r);
	int			nb = br ? array_len(br) : 0;

	for (int i = 0; i < nb; i++)
	{
		View		bi = view(array_elem(br, i), r.root, V_FULL, T_ALL);
		bool		ok = true;

		if (!try_sub(c, w, bi))
			continue;
		if (r.k == V_ONEOF)
			for (int j = 0; j < nb && ok; j++)
			{
				View		bj = view(array_elem(br, j), r.root, V_FULL, T_ALL);

				ok = j == i || disjoint(c, bi, bj) || disjoint(c, w, bj);
			}
		if (ok)
			return true;
	}
	if (split)
	{
		int			wm = value_mask(&w);
		int			kinds[] = {T_NULL, T_BOOL, T_OBJECT, T_ARRAY, T_STRING, T_NUMBER};
		int			nk = 0;

		for (int k = 0; k < lengthof(kinds); k++)
			nk += (wm & kinds[k]) != 0;
		if (nk < 2)
			return false;
		for (int k = 0; k < lengthof(kinds); k++)
		{
			View		part = w;

			if (!(wm & kinds[k]))
				continue;
			part.tmask = wm & kinds[k];
			if (!fits_union(c, part, r, false))
				return false;
		}
		return true;
	}
	return false;
}

/* a $ref pair met before: 1 assume it holds, -1 a cycle, 0 new */
static int
ref_seen(Ctx *c, View *w, View *r)
{
	for (int i = 0; i < c->nframes; i++)
		if (c->frames[i].w == w->s && c->frames[i].r == r->s)
			return c->frames[i].descents < c->descents ? 1 : -1;
	return 0;
}

static void
sub_ref(Ctx *c, View w, View r, bool reader_side)
{
	View		t;
	View	   *side = reader_side ? &r : &w;
	int			seen;

	if (!resolve_ref(side, &t))
	{
		JsonbValue *ref = kw(side->s, "$ref");

		add_reason(c, "$ref %s cannot be resolved (only #/$defs/<name> of the same schema); cannot be shown compatible",
				   ref ? value_text(ref) : "?");
		return;
	}
	*side = t;
	seen = ref_seen(c, &w, &r);
	if (seen > 0)
		return;
	if (seen < 0)
	{
		add_reason(c, "$ref cycle without nested content; cannot be shown compatible");
		return;
	}
	if (c->nframes >= EB_COMPAT_MAX_FRAMES)
	{
		c->too_deep = true;
		add_reason(c, "$ref nesting too deep; cannot be shown compatible");
		return;
	}
	c->frames[c->nframes].w = w.s;
	c->frames[c->nframes].r = r.s;
	c->frames[c->nframes].descents = c->descents;
	c->nframes++;
	sub(c, w, r);
	c->nframes--;
}

static void
sub_inner(Ctx *c, View *w, View *r)
{
	JsonbValue *x;
	ListCell   *lc;

	if ((r->k == V_FULL || r->k == V_BASE) && trivially_true(r))
		return;
	if ((w->k == V_FULL || w->k == V_BASE) && is_bool_schema(w->s, false))
		return;
	if ((w->s->type != jbvBool && !is_object(w->s)) ||
		(r->s->type != jbvBool && !is_object(r->s)))
	{
		add_reason(c, "a subschema is not an object or a boolean; cannot be shown compatible");
		return;
	}
	if (is_bool_schema(r->s, false))
	{
		add_reason(c, BF(c, "no value is accepted any more (false schema)",
						 "the old schema accepts no value here (false schema)"));
		return;
	}

	/* equal schemas (or equal combinator parts) */
	if (w->k == r->k && is_object(w->s) && is_object(r->s) && w->k != V_REF &&
		(c->defs_equal || !contains_ref(w->s)))
	{
		const char *kwname = w->k == V_ANYOF ? "anyOf" : w->k == V_ONEOF ? "oneOf" :
		w->k == V_NOT ? "not" : NULL;

		if (kwname == NULL)
		{
			if (w->k == V_FULL &&
				compareJsonbContainers(w->s->val.binary.data, r->s->val.binary.data) == 0)
				return;
		}
		else
		{
			JsonbValue *a = kw(w->s, kwname),
					   *b = kw(r->s, kwname);

			if (a && b && values_equal(a, b) && (c->defs_equal || !contains_ref(a)))
				return;
		}
	}

	/* the reader: each of its parts */
	if (r->k == V_REF)
	{
		sub_ref(c, *w, *r, true);
		return;
	}
	if (r->k == V_FULL && has_combinators(r))
	{
		foreach(lc, parts_of(r))
			sub(c, *w, *(View *) lfirst(lc));
		return;
	}
	if (r->k == V_FULL)
		r->k = V_BASE;

	/* the writer: one of its parts */
	if (w->k == V_REF)
	{
		sub_ref(c, *w, *r, false);
		return;
	}
	if (w->k == V_FULL && has_combinators(w))
	{
		List	   *parts = parts_of(w);
		View	   *base = NULL;

		if (list_length(parts) == 1)
		{
			sub(c, *(View *) linitial(parts), *r);
			return;
		}
		foreach(lc, parts)
		{
			View	   *p = lfirst(lc);

			if (try_sub(c, *p, *r))
				return;
			if (p->k == V_BASE)
				base = p;
		}
		if (base != NULL)
			sub(c, *base, *r);
		else
			add_reason(c, "the %s schema's allOf/anyOf/oneOf/not/$ref cannot be shown to fit; cannot be shown compatible",
					   WRITER(c));
		return;
	}
	if (w->k == V_FULL)
		w->k = V_BASE;
	if (w->k == V_ANYOF || w->k == V_ONEOF)
	{
		JsonbValue *br = branches(w);

		if (br == NULL)
		{
			add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
					   w->k == V_ANYOF ? "anyOf" : "oneOf");
			return;
		}
		for (int i = 0; i < array_len(br); i++)
			sub(c, view(array_elem(br, i), w->root, V_FULL, w->tmask), *r);
		return;
	}
	if (w->k == V_NOT)
	{
		add_reason(c, "the %s schema's \"not\" cannot be shown to fit; cannot be shown compatible",
				   WRITER(c));
		return;
	}

	/* the writer is a base */
	switch (r->k)
	{
		case V_ANYOF:
		case V_ONEOF:
			if (branches(r) == NULL)
				add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
						   r->k == V_ANYOF ? "anyOf" : "oneOf");
			else if (!fits_union(c, *w, *r, true))
				add_reason(c, "no branch of %s can be shown to accept every value of the %s schema%s; cannot be shown compatible",
						   r->k == V_ANYOF ? "anyOf" : "oneOf", WRITER(c),
						   r->k == V_ONEOF ? " (and only that branch)" : "");
			break;
		case V_NOT:
			x = kw(r->s, "not");
			if (!disjoint(c, *w, view(x, r->root, V_FULL, T_ALL)))
				add_reason(c, "\"not\" cannot be shown to exclude every value of the %s schema; cannot be shown compatible",
						   WRITER(c));
			break;
		default:
			cmp_base(c, w, r);
			break;
	}
}

/* adds a reason for every way the writer may not fit the reader */
static void
sub(Ctx *c, View w, View r)
{
	if (!enter(c))
	{
		if (c->too_deep && !c->exhausted)
			add_reason(c, "schemas nested too deeply; cannot be shown compatible");
		else
			add_reason(c, "the schemas are too complex to compare; cannot be shown compatible");
		return;
	}
	sub_inner(c, &w, &r);
	c->depth--;
}

static bool
try_sub(Ctx *c, View w, View r)
{
	int			n = list_length(c->reasons);
	bool		ok;

	sub(c, w, r);
	ok = list_length(c->reasons) == n;
	c->reasons = list_truncate(c->reasons, n);
	return ok;
}

/* the root of a document as a schema, or NULL if it is not one */
static JsonbValue *
root_of(Jsonb *jb)
{
	JsonbValue *v = palloc0(sizeof(JsonbValue));

	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, v) || v->type != jbvBool)
			return NULL;
		return v;
	}
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v->type = jbvBinary;
	v->val.binary.data = &jb->root;
	v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	return v;
}

static List *
incompatibilities(Jsonb *reader, Jsonb *writer, bool reader_is_old)
{
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext,
											   "schema compatibility",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext caller = MemoryContextSwitchTo(work);
	Ctx			c;
	JsonbValue *wroot,
			   *rroot;
	List	   *result = NIL;
	ListCell   *lc;

	memset(&c, 0, sizeof(c));
	c.fwd = reader_is_old;
	initStringInfo(&c.path);
	appendStringInfoChar(&c.path, '$');
	wroot = root_of(writer);
	rroot = root_of(reader);
	if (wroot == NULL || rroot == NULL)
		add_reason(&c, "the %s schema is not a JSON object or boolean",
				   (wroot == NULL) != c.fwd ? "old" : "new");
	else
	{
		JsonbValue *wd = kw(wroot, "$defs"),
				   *rd = kw(rroot, "$defs");

		c.defs_equal = (wd == NULL && rd == NULL) ||
			(wd != NULL && rd != NULL && values_equal(wd, rd));
		sub(&c, view(wroot, wroot, V_FULL, T_ALL), view(rroot, rroot, V_FULL, T_ALL));
		if (c.exhausted && c.reasons == NIL)
			add_reason(&c, "the schemas are too complex to compare; cannot be shown compatible");
	}

	MemoryContextSwitchTo(caller);
	foreach(lc, c.reasons)
	{
		char	   *s = lfirst(lc);
		bool		dup = false;
		ListCell   *lc2;

		foreach(lc2, result)
			dup = dup || strcmp((char *) lfirst(lc2), s) == 0;
		if (dup)
			continue;
		if (list_length(result) == EB_COMPAT_MAX_REASONS)
		{
			result = lappend(result, pstrdup("... and further differences"));
			break;
		}
		result = lappend(result, pstrdup(s));
	}
	MemoryContextDelete(work);
	return result;
}

List *
eb_schema_incompatibilities(Jsonb *reader, Jsonb *writer)
{
	return incompatibilities(reader, writer, false);
}

List *
eb_schema_incompatibilities_phrased(Jsonb *reader, Jsonb *writer, bool reader_is_old)
{
	return incompatibilities(reader, writer, reader_is_old);
}

/* ---------------------------------------------------------------- */
/* SQL: eventbus.check_schema_compatibility(new, old, mode)			*/
/* ---------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(eb_check_schema_compatibility);

static void
check_schema_arg(Jsonb *jb, const char *argname)
{
	if (root_of(jb) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a JSON Schema", argname),
				 errdetail("A schema is a JSON object or the boolean true or false.")));
}

static void
emit(ReturnSetInfo *rsinfo, List *reasons, const char *prefix)
{
	ListCell   *lc;

	foreach(lc, reasons)
	{
		char	   *s = lfirst(lc);
		Datum		value;
		bool		isnull = false;

		value = CStringGetTextDatum(prefix ? psprintf("%s: %s", prefix, s) : s);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
}

Datum
eb_check_schema_compatibility(PG_FUNCTION_ARGS)
{
	Jsonb	   *newer = PG_GETARG_JSONB_P(0);
	Jsonb	   *older = PG_GETARG_JSONB_P(1);
	char	   *mode = text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		backward,
				forward;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	backward = strcmp(mode, "backward") == 0 || strcmp(mode, "full") == 0;
	forward = strcmp(mode, "forward") == 0 || strcmp(mode, "full") == 0;
	if (backward || forward || strcmp(mode, "none") == 0)
		;
	else if (strcmp(mode, "backward_transitive") == 0 ||
			 strcmp(mode, "forward_transitive") == 0 ||
			 strcmp(mode, "full_transitive") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("compatibility \"%s\" needs every earlier version", mode),
				 errdetail("check_schema_compatibility() compares two schemas."),
				 errhint("Call it once for each earlier version with compatibility '%.*s'; register_schema() does that for a topic.",
						 (int) (strchr(mode, '_') - mode), mode)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown compatibility \"%s\"", mode),
				 errhint("Use 'backward', 'forward', 'full' or 'none'.")));

	check_schema_arg(newer, "new_schema");
	check_schema_arg(older, "old_schema");
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (backward)
		emit(rsinfo, incompatibilities(newer, older, false),
			 forward ? "backward" : NULL);
	if (forward)
		emit(rsinfo, incompatibilities(older, newer, true),
			 backward ? "forward" : NULL);
	return (Datum) 0;
}
