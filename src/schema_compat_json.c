/*-------------------------------------------------------------------------
 *
 * schema_compat_json.c
 *	  For the schema compatibility check: reading a JSON Schema held in a
 *	  jsonb (keywords, types, $ref within the document), validating one
 *	  concrete value against a schema (enum and const members), and the
 *	  finite value sets (enum, const) that disjointness (schema_compat.c)
 *	  compares.
 *
 * validate() answers yes, no or maybe (a format, a keyword outside the
 * subset, a bound reached).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation_d.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "schema_compat_int.h"

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

/* ---------------------------------------------------------------- */
/* Small helpers													*/
/* ---------------------------------------------------------------- */

static bool
in_list(const char *const *list, const char *s, int len)
{
	for (; *list; list++)
		if ((int) strlen(*list) == len && memcmp(*list, s, len) == 0)
			return true;
	return false;
}

bool
sc_is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

bool
sc_is_array(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

bool
sc_is_bool_schema(JsonbValue *v, bool val)
{
	return v != NULL && v->type == jbvBool && v->val.boolean == val;
}

/* a keyword of a schema object, or NULL */
JsonbValue *
sc_kw(JsonbValue *s, const char *name)
{
	return sc_kwn(s, name, strlen(name));
}

JsonbValue *
sc_kwn(JsonbValue *s, const char *name, int len)
{
	JsonbValue *res;

	if (!sc_is_object(s))
		return NULL;
	res = palloc(sizeof(JsonbValue));
	if (!getKeyJsonValueFromContainer(s->val.binary.data, name, len, res))
	{
		pfree(res);
		return NULL;
	}
	return res;
}

int
sc_array_len(JsonbValue *a)
{
	return sc_is_array(a) ? JsonContainerSize(a->val.binary.data) : 0;
}

JsonbValue *
sc_array_elem(JsonbValue *a, int i)
{
	return getIthJsonbValueFromContainer(a->val.binary.data, i);
}

/* the keys and values of an object, in storage order */
int
sc_object_entries(JsonbValue *o, JsonbValue **keys, JsonbValue **vals)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			size;

	if (!sc_is_object(o))
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

char *
sc_value_text(JsonbValue *v)
{
	Jsonb	   *jb = JsonbValueToJsonb(v);

	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

bool
sc_values_equal(JsonbValue *a, JsonbValue *b)
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

int
sc_ncmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

Numeric
sc_nint(int64 i)
{
	return DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(i)));
}

char *
sc_nstr(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

bool
sc_nintegral(Numeric n)
{
	Numeric		f = DatumGetNumeric(DirectFunctionCall1(numeric_floor,
														NumericGetDatum(n)));

	return sc_ncmp(n, f) == 0;
}

/* a is a multiple of d (d > 0) */
bool
sc_nmultiple(Numeric a, Numeric d)
{
	Numeric		m = DatumGetNumeric(DirectFunctionCall2(numeric_mod,
														NumericGetDatum(a),
														NumericGetDatum(d)));

	return sc_ncmp(m, sc_nint(0)) == 0;
}

/*
 * A numeric keyword: 0 absent, 1 present (*out set), -1 malformed.  Counts
 * (minLength ...) must be non-negative integers, multipleOf positive.
 */
int
sc_kw_num(JsonbValue *s, const char *name, Numeric *out)
{
	JsonbValue *v = sc_kw(s, name);
	bool		count = strncmp(name, "min", 3) == 0 || strncmp(name, "max", 3) == 0;

	if (v == NULL)
		return 0;
	if (v->type != jbvNumeric)
		return -1;
	/* minimum/maximum are not counts */
	if (strcmp(name, "minimum") == 0 || strcmp(name, "maximum") == 0)
		count = false;
	if (count && (!sc_nintegral(v->val.numeric) || sc_ncmp(v->val.numeric, sc_nint(0)) < 0))
		return -1;
	if (strcmp(name, "multipleOf") == 0 && sc_ncmp(v->val.numeric, sc_nint(0)) <= 0)
		return -1;
	*out = v->val.numeric;
	return 1;
}

int
sc_kind_of(JsonbValue *v)
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
			return sc_nintegral(v->val.numeric) ? T_INT : T_FRAC;
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

	for (int i = 0; i < (int) lengthof(types); i++)
		if ((int) strlen(types[i].name) == len && memcmp(types[i].name, name, len) == 0)
			return types[i].bits;
	return -1;
}

/* the types a schema's "type" keyword allows, -1 if malformed */
int
sc_type_mask(JsonbValue *s)
{
	JsonbValue *t = sc_kw(s, "type");
	int			mask = 0;

	if (t == NULL)
		return T_ALL;
	if (t->type == jbvString)
		return type_bit(t->val.string.val, t->val.string.len);
	if (!sc_is_array(t))
		return -1;
	for (int i = 0; i < sc_array_len(t); i++)
	{
		JsonbValue *e = sc_array_elem(t, i);
		int			b;

		if (e->type != jbvString ||
			(b = type_bit(e->val.string.val, e->val.string.len)) < 0)
			return -1;
		mask |= b;
	}
	return mask;
}

char *
sc_mask_text(int m)
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
int
sc_value_mask(View *v)
{
	int			m;
	Numeric		d;

	if (sc_is_bool_schema(v->s, false))
		return 0;
	m = sc_type_mask(v->s);
	if (m < 0)
		m = T_ALL;
	/* a multiple of an integer is an integer */
	if (sc_kw_num(v->s, "multipleOf", &d) == 1 && sc_nintegral(d))
		m &= ~T_FRAC;
	return m & v->tmask;
}

/* classify an object schema's keywords */
void
sc_scan_keywords(JsonbValue *s, bool *has_base, bool *has_comb, List **unknown)
{
	JsonbValue *keys,
			   *vals;
	int			n = sc_object_entries(s, &keys, &vals);

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
bool
sc_trivially_true(View *v)
{
	bool		has_base,
				has_comb;

	if (v->s->type == jbvBool)
		return v->s->val.boolean;
	if (!sc_is_object(v->s))
		return false;
	sc_scan_keywords(v->s, &has_base, &has_comb, NULL);
	if (v->k == V_BASE)
		return !has_base;
	if (v->k == V_FULL)
		return !has_base && !has_comb;
	return false;
}

/*
 * Whether a subschema has $refs: 1 if any, 2 if one of them is "#" (the
 * document's root, which differs between the two documents even where
 * their $defs are equal), 0 if none.
 */
int
sc_contains_ref(JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	x;
	JsonbIteratorToken tok;
	bool		after_ref = false;
	int			res = 0;

	if (v->type != jbvBinary)
		return 0;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &x, false)) != WJB_DONE)
	{
		if (tok == WJB_VALUE && after_ref && x.type == jbvString &&
			x.val.string.len == 1 && x.val.string.val[0] == '#')
			res = 2;
		after_ref = tok == WJB_KEY && x.val.string.len == 4 &&
			memcmp(x.val.string.val, "$ref", 4) == 0;
		if (after_ref && res == 0)
			res = 1;
	}
	return res;
}

View
sc_view(JsonbValue *s, JsonbValue *root, ViewKind k, uint8 tmask)
{
	View		v;

	v.s = s;
	v.root = root;
	v.k = k;
	v.tmask = tmask;
	return v;
}

/* resolve the $ref of a view to the whole target schema */
bool
sc_resolve_ref(View *v, View *out)
{
	JsonbValue *ref = sc_kw(v->s, "$ref");
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
		*out = sc_view(v->root, v->root, V_FULL, v->tmask);
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
	defs = sc_kw(v->root, "$defs");
	if (defs == NULL || !sc_is_object(defs))
		return false;
	target = sc_kwn(defs, name.data, name.len);
	if (target == NULL)
		return false;
	*out = sc_view(target, v->root, V_FULL, v->tmask);
	return true;
}

/* the parts of a whole schema that has combinators; see the file header */
List *
sc_parts_of(View *v)
{
	List	   *parts = NIL;
	bool		has_base,
				has_comb;
	JsonbValue *x;
	View	   *p;

#define ADD_PART(s_, k_) \
	do { p = palloc(sizeof(View)); *p = sc_view((s_), v->root, (k_), v->tmask); \
		 parts = lappend(parts, p); } while (0)

	sc_scan_keywords(v->s, &has_base, &has_comb, NULL);
	if (has_base)
		ADD_PART(v->s, V_BASE);
	if (sc_kw(v->s, "$ref"))
		ADD_PART(v->s, V_REF);
	if ((x = sc_kw(v->s, "allOf")) != NULL)
	{
		if (!sc_is_array(x))
			ADD_PART(v->s, V_BASE); /* reported as malformed there */
		for (int i = 0; i < sc_array_len(x); i++)
			ADD_PART(sc_array_elem(x, i), V_FULL);
	}
	if (sc_kw(v->s, "anyOf"))
		ADD_PART(v->s, V_ANYOF);
	if (sc_kw(v->s, "oneOf"))
		ADD_PART(v->s, V_ONEOF);
	if (sc_kw(v->s, "not"))
		ADD_PART(v->s, V_NOT);
#undef ADD_PART
	return parts;
}

bool
sc_has_combinators(View *v)
{
	bool		has_base,
				has_comb;

	if (!sc_is_object(v->s))
		return false;
	sc_scan_keywords(v->s, &has_base, &has_comb, NULL);
	return has_comb;
}

/* the branches of an anyOf/oneOf view; NULL if malformed */
JsonbValue *
sc_branches(View *v)
{
	JsonbValue *b = sc_kw(v->s, v->k == V_ANYOF ? "anyOf" : "oneOf");

	return (b && sc_is_array(b) && sc_array_len(b) > 0) ? b : NULL;
}

/* one step of work; false when the budget is spent */
bool
sc_tick(Ctx *c)
{
	CHECK_FOR_INTERRUPTS();
	if (++c->steps > EB_COMPAT_MAX_STEPS)
	{
		c->exhausted = true;
		return false;
	}
	return true;
}

/* one step of work, one level deeper; false when a bound is reached */
bool
sc_enter(Ctx *c)
{
	check_stack_depth();
	if (!sc_tick(c))
		return false;
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
	int			kind = sc_kind_of(v);
	int			tm = sc_type_mask(s_);
	VRes		res = VR_YES;
	List	   *unknown;
	bool		has_base,
				has_comb;
	Numeric		n;

	sc_scan_keywords(s_, &has_base, &has_comb, &unknown);
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
		set_why(why, "type %s", sc_mask_text(tm));
		return VR_NO;
	}
	if ((x = sc_kw(s_, "const")) != NULL && !sc_values_equal(v, x))
	{
		set_why(why, "const %s", sc_value_text(x));
		return VR_NO;
	}
	if ((x = sc_kw(s_, "enum")) != NULL)
	{
		bool		found = false;

		for (int i = 0; i < sc_array_len(x) && !found; i++)
			found = sc_values_equal(v, sc_array_elem(x, i));
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
			int			r = sc_kw_num(s_, bounds[b], &n);
			int			cmp;
			bool		bad;

			if (r < 0)
				res = vand(res, VR_MAYBE);
			if (r != 1)
				continue;
			cmp = sc_ncmp(num, n);
			bad = (b == 0 && cmp < 0) || (b == 1 && cmp <= 0) ||
				(b == 2 && cmp > 0) || (b == 3 && cmp >= 0);
			if (bad)
			{
				set_why(why, "%s %s", bounds[b], sc_nstr(n));
				return VR_NO;
			}
		}
		if (sc_kw_num(s_, "multipleOf", &n) == 1 && !sc_nmultiple(num, n))
		{
			set_why(why, "multipleOf %s", sc_nstr(n));
			return VR_NO;
		}
	}
	if (kind == T_STRING)
	{
		int			len = pg_mbstrlen_with_len(v->val.string.val, v->val.string.len);

		if (sc_kw_num(s_, "minLength", &n) == 1 && sc_ncmp(sc_nint(len), n) < 0)
		{
			set_why(why, "minLength %s", sc_nstr(n));
			return VR_NO;
		}
		if (sc_kw_num(s_, "maxLength", &n) == 1 && sc_ncmp(sc_nint(len), n) > 0)
		{
			set_why(why, "maxLength %s", sc_nstr(n));
			return VR_NO;
		}
		if ((x = sc_kw(s_, "pattern")) != NULL)
		{
			if (x->type != jbvString)
				res = vand(res, VR_MAYBE);
			else if (!DatumGetBool(DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
														   PointerGetDatum(cstring_to_text_with_len(v->val.string.val, v->val.string.len)),
														   PointerGetDatum(cstring_to_text_with_len(x->val.string.val, x->val.string.len)))))
			{
				set_why(why, "pattern %s", sc_value_text(x));
				return VR_NO;
			}
		}
		if (sc_kw(s_, "format") != NULL)
		{
			set_why(why, "format");
			res = vand(res, VR_MAYBE);
		}
	}
	if (kind == T_ARRAY)
	{
		int			len = sc_array_len(v);
		JsonbValue *prefix = sc_kw(s_, "prefixItems");
		JsonbValue *items = sc_kw(s_, "items");
		int			np = prefix ? sc_array_len(prefix) : 0;

		if (sc_kw_num(s_, "minItems", &n) == 1 && sc_ncmp(sc_nint(len), n) < 0)
		{
			set_why(why, "minItems %s", sc_nstr(n));
			return VR_NO;
		}
		if (sc_kw_num(s_, "maxItems", &n) == 1 && sc_ncmp(sc_nint(len), n) > 0)
		{
			set_why(why, "maxItems %s", sc_nstr(n));
			return VR_NO;
		}
		for (int i = 0; i < len && res != VR_NO; i++)
		{
			JsonbValue *is = i < np ? sc_array_elem(prefix, i) : items;

			if (is != NULL)
				res = vand(res, sc_validate(c, sc_array_elem(v, i),
										 sc_view(is, s.root, V_FULL, T_ALL), why));
		}
		if ((x = sc_kw(s_, "uniqueItems")) != NULL && x->type == jbvBool && x->val.boolean)
		{
			for (int i = 0; i < len && res != VR_NO; i++)
				for (int j = i + 1; j < len; j++)
					if (!sc_tick(c))
						return VR_MAYBE;
					else if (sc_values_equal(sc_array_elem(v, i), sc_array_elem(v, j)))
					{
						set_why(why, "uniqueItems");
						return VR_NO;
					}
		}
	}
	if (kind == T_OBJECT)
	{
		JsonbValue *req = sc_kw(s_, "required");
		JsonbValue *props = sc_kw(s_, "properties");
		JsonbValue *addl = sc_kw(s_, "additionalProperties");
		JsonbValue *keys,
				   *vals;
		int			nk;

		for (int i = 0; i < sc_array_len(req); i++)
		{
			JsonbValue *name = sc_array_elem(req, i);

			if (name->type == jbvString &&
				!sc_kwn(v, name->val.string.val, name->val.string.len))
			{
				set_why(why, "required property \"%.*s\"", name->val.string.len,
						name->val.string.val);
				return VR_NO;
			}
		}
		nk = sc_object_entries(v, &keys, &vals);
		for (int i = 0; i < nk && res != VR_NO; i++)
		{
			JsonbValue *ps = props ? sc_kwn(props, keys[i].val.string.val,
										 keys[i].val.string.len) : NULL;

			if (ps == NULL)
				ps = addl;
			if (ps != NULL)
				res = vand(res, sc_validate(c, &vals[i], sc_view(ps, s.root, V_FULL, T_ALL), why));
		}
	}
	return res;
}

/* is value v valid under schema s (whole, or its base) */
VRes
sc_validate(Ctx *c, JsonbValue *v, View s, StringInfo why)
{
	VRes		res = VR_YES;
	JsonbValue *x;
	View		t;

	if (!sc_enter(c))
		return VR_MAYBE;
	if (s.s->type == jbvBool)
	{
		c->depth--;
		if (!s.s->val.boolean)
			set_why(why, "false schema");
		return s.s->val.boolean ? VR_YES : VR_NO;
	}
	if (!sc_is_object(s.s))
	{
		c->depth--;
		return VR_MAYBE;
	}
	res = validate_base(c, v, s, why);
	if (s.k == V_FULL && res != VR_NO)
	{
		if (sc_kw(s.s, "$ref"))
			res = vand(res, sc_resolve_ref(&s, &t) ? sc_validate(c, v, t, why) : VR_MAYBE);
		if (res != VR_NO && (x = sc_kw(s.s, "allOf")) != NULL)
			for (int i = 0; i < sc_array_len(x) && res != VR_NO; i++)
				res = vand(res, sc_validate(c, v, sc_view(sc_array_elem(x, i), s.root, V_FULL, T_ALL), why));
		if (res != VR_NO && (x = sc_kw(s.s, "anyOf")) != NULL)
		{
			VRes		any = VR_NO;

			for (int i = 0; i < sc_array_len(x) && any != VR_YES; i++)
			{
				VRes		b = sc_validate(c, v, sc_view(sc_array_elem(x, i), s.root, V_FULL, T_ALL), NULL);

				if (b == VR_YES || (b == VR_MAYBE && any == VR_NO))
					any = b;
			}
			if (any == VR_NO)
				set_why(why, "anyOf");
			res = vand(res, any);
		}
		if (res != VR_NO && (x = sc_kw(s.s, "oneOf")) != NULL)
		{
			int			yes = 0,
						maybe = 0;

			for (int i = 0; i < sc_array_len(x); i++)
			{
				VRes		b = sc_validate(c, v, sc_view(sc_array_elem(x, i), s.root, V_FULL, T_ALL), NULL);

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
		if (res != VR_NO && (x = sc_kw(s.s, "not")) != NULL)
		{
			VRes		b = sc_validate(c, v, sc_view(x, s.root, V_FULL, T_ALL), NULL);

			if (b == VR_YES)
				set_why(why, "not");
			res = vand(res, b == VR_YES ? VR_NO : b == VR_NO ? VR_YES : VR_MAYBE);
		}
	}
	c->depth--;
	return res;
}

/* ---------------------------------------------------------------- */
/* Finite value sets, for disjointness (schema_compat.c)              */
/* ---------------------------------------------------------------- */

/* the finite set of values of a base, or NULL */
JsonbValue *
sc_finite_values(JsonbValue *s, int *n)
{
	JsonbValue *x;

	if ((x = sc_kw(s, "const")) != NULL)
	{
		*n = 1;
		return x;
	}
	if ((x = sc_kw(s, "enum")) != NULL && sc_is_array(x))
	{
		*n = sc_array_len(x);
		return x;
	}
	return NULL;
}

JsonbValue *
sc_finite_value(JsonbValue *s, JsonbValue *set, int i)
{
	return sc_kw(s, "const") ? set : sc_array_elem(set, i);
}
