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

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "schema_compat.h"
#include "schema_compat_int.h"

/* which of old/new a message names: the writer is the old one unless fwd */
#define BF(c, b_, f_) ((c)->fwd ? (f_) : (b_))
#define OLDV(c, w, r) ((c)->fwd ? (r) : (w))
#define NEWV(c, w, r) ((c)->fwd ? (w) : (r))
#define WRITER(c) ((c)->fwd ? "new" : "old")

static void sub(Ctx *c, View w, View r);
static bool sc_try_sub(Ctx *c, View w, View r);
static bool sc_disjoint(Ctx *c, View a, View b);

/* ---------------------------------------------------------------- */
/* Reasons and paths													*/
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

	ok = (wincl && (rexcl ? sign * sc_ncmp(wincl, rb) > 0 : sign * sc_ncmp(wincl, rb) >= 0)) ||
		(wexcl && sign * sc_ncmp(wexcl, rb) >= 0);
	if (ok)
		return;
	if (!wincl && !wexcl)
	{
		add_reason(c, BF(c, "%s %s was added", "%s %s was removed"), rkw, sc_nstr(rb));
		return;
	}
	/* the writer's tighter bound */
	if (wincl && (!wexcl || sign * sc_ncmp(wincl, wexcl) > 0))
		wkw = wkw_incl, wb = wincl;
	else
		wkw = wkw_excl, wb = wexcl;
	if (strcmp(wkw, rkw) == 0)
		add_reason(c, "%s %s from %s to %s", rkw,
				   (lower != c->fwd) ? "raised" : "lowered",
				   sc_nstr(OLDV(c, wb, rb)), sc_nstr(NEWV(c, wb, rb)));
	else
		add_reason(c, "%s bound %s from %s %s to %s %s", lower ? "lower" : "upper",
				   c->fwd ? "loosened" : "tightened",
				   OLDV(c, wkw, rkw), sc_nstr(OLDV(c, wb, rb)),
				   NEWV(c, wkw, rkw), sc_nstr(NEWV(c, wb, rb)));
}

/* a count (minLength, maxItems ...): the writer's w (NULL: none) against r */
static void
cmp_count(Ctx *c, bool lower, const char *name, Numeric w, Numeric r)
{
	if (w == NULL && lower && sc_ncmp(r, sc_nint(0)) <= 0)
		return;
	if (w != NULL && (lower ? sc_ncmp(w, r) >= 0 : sc_ncmp(w, r) <= 0))
		return;
	if (w == NULL)
		add_reason(c, BF(c, "%s %s was added", "%s %s was removed"), name, sc_nstr(r));
	else
		add_reason(c, "%s %s from %s to %s", name,
				   (lower != c->fwd) ? "raised" : "lowered",
				   sc_nstr(OLDV(c, w, r)), sc_nstr(NEWV(c, w, r)));
}

static Numeric
opt_num(JsonbValue *s, const char *name)
{
	Numeric		n;

	return sc_kw_num(s, name, &n) == 1 ? n : NULL;
}

static void
malformed(Ctx *c, JsonbValue *s, const char *name)
{
	Numeric		n;

	if (sc_kw_num(s, name, &n) < 0)
		add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible", name);
}

static void
cmp_numbers(Ctx *c, View *w, View *r, int wm)
{
	JsonbValue *ws = w->s,
			   *rs = r->s;
	Numeric		rb,
				d;
	Numeric		wmin = opt_num(ws, "minimum"),
				wxmin = opt_num(ws, "exclusiveMinimum"),
				wmax = opt_num(ws, "maximum"),
				wxmax = opt_num(ws, "exclusiveMaximum");

	malformed(c, rs, "minimum");
	malformed(c, rs, "exclusiveMinimum");
	malformed(c, rs, "maximum");
	malformed(c, rs, "exclusiveMaximum");
	malformed(c, rs, "multipleOf");

	/* integers above exclusiveMinimum e are at least floor(e) + 1 */
	if (!(wm & T_FRAC) && wxmin != NULL)
	{
		Numeric		m = DatumGetNumeric(DirectFunctionCall2(numeric_add,
															DirectFunctionCall1(numeric_floor, NumericGetDatum(wxmin)),
															NumericGetDatum(sc_nint(1))));

		if (wmin == NULL || sc_ncmp(m, wmin) > 0)
			wmin = m;
		wxmin = NULL;
	}
	if (!(wm & T_FRAC) && wxmax != NULL)
	{
		Numeric		m = DatumGetNumeric(DirectFunctionCall2(numeric_sub,
															DirectFunctionCall1(numeric_ceil, NumericGetDatum(wxmax)),
															NumericGetDatum(sc_nint(1))));

		if (wmax == NULL || sc_ncmp(m, wmax) < 0)
			wmax = m;
		wxmax = NULL;
	}

	if ((rb = opt_num(rs, "minimum")) != NULL)
		cmp_bound(c, true, "minimum", rb, false, "minimum", wmin, "exclusiveMinimum", wxmin);
	if ((rb = opt_num(rs, "exclusiveMinimum")) != NULL)
		cmp_bound(c, true, "exclusiveMinimum", rb, true, "minimum", wmin, "exclusiveMinimum", wxmin);
	if ((rb = opt_num(rs, "maximum")) != NULL)
		cmp_bound(c, false, "maximum", rb, false, "maximum", wmax, "exclusiveMaximum", wxmax);
	if ((rb = opt_num(rs, "exclusiveMaximum")) != NULL)
		cmp_bound(c, false, "exclusiveMaximum", rb, true, "maximum", wmax, "exclusiveMaximum", wxmax);
	if ((d = opt_num(rs, "multipleOf")) != NULL)
	{
		Numeric		wd = opt_num(ws, "multipleOf");
		Numeric		step = wd ? wd : (!(wm & T_FRAC) ? sc_nint(1) : NULL);

		if (step == NULL || !sc_nmultiple(step, d))
		{
			if (wd == NULL)
				add_reason(c, BF(c, "multipleOf %s was added", "multipleOf %s was removed"),
						   sc_nstr(d));
			else
				add_reason(c, "multipleOf changed from %s to %s",
						   sc_nstr(OLDV(c, wd, d)), sc_nstr(NEWV(c, wd, d)));
		}
	}
}

/* pattern and format: equal, or a reason */
static void
cmp_same_string(Ctx *c, JsonbValue *ws, JsonbValue *rs, const char *name)
{
	JsonbValue *rv = sc_kw(rs, name);
	JsonbValue *wv = sc_kw(ws, name);

	if (rv == NULL || (wv != NULL && sc_values_equal(wv, rv)))
		return;
	if (wv == NULL)
		add_reason(c, BF(c, "%s %s was added", "%s %s was removed"), name, sc_value_text(rv));
	else
		add_reason(c, "%s changed from %s to %s; cannot be shown compatible", name,
				   sc_value_text(OLDV(c, wv, rv)), sc_value_text(NEWV(c, wv, rv)));
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
	JsonbValue *wprefix = sc_kw(ws, "prefixItems"),
			   *rprefix = sc_kw(rs, "prefixItems");
	JsonbValue *witems = sc_kw(ws, "items"),
			   *ritems = sc_kw(rs, "items");
	int			nw = wprefix ? sc_array_len(wprefix) : 0;
	int			nr = rprefix ? sc_array_len(rprefix) : 0;
	Numeric		wmax = opt_num(ws, "maxItems");
	Numeric		n;
	JsonbValue *x;
	static JsonbValue true_schema = {.type = jbvBool,.val.boolean = true};

	malformed(c, rs, "minItems");
	malformed(c, rs, "maxItems");
	if ((rprefix && !sc_is_array(rprefix)) || (ritems && sc_is_array(ritems)))
		add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
				   (ritems && sc_is_array(ritems)) ? "items" : "prefixItems");
	/* items: false after the prefix bounds the length */
	if (witems && sc_is_bool_schema(witems, false) && (wmax == NULL || sc_ncmp(sc_nint(nw), wmax) < 0))
		wmax = sc_nint(nw);
	if ((n = opt_num(rs, "minItems")) != NULL)
		cmp_count(c, true, "minItems", opt_num(ws, "minItems"), n);
	if ((n = opt_num(rs, "maxItems")) != NULL)
		cmp_count(c, false, "maxItems", wmax, n);
	if ((x = sc_kw(rs, "uniqueItems")) != NULL && x->type == jbvBool && x->val.boolean)
	{
		JsonbValue *wu = sc_kw(ws, "uniqueItems");

		if (!(wu && wu->type == jbvBool && wu->val.boolean) &&
			!(wmax && sc_ncmp(wmax, sc_nint(1)) <= 0))
			add_reason(c, BF(c, "uniqueItems was added", "uniqueItems was removed"));
	}
	if (witems && sc_is_array(witems))
		witems = NULL;			/* not 2020-12: ignoring it only widens the writer */
	if (!witems)
		witems = &true_schema;
	if (!ritems || sc_is_array(ritems))
		ritems = &true_schema;

	/* position by position, then the rest */
	for (int i = 0; i < Max(nw, nr); i++)
	{
		JsonbValue *wi = i < nw ? sc_array_elem(wprefix, i) : witems;
		JsonbValue *ri = i < nr ? sc_array_elem(rprefix, i) : ritems;
		int			save;

		if (wmax && sc_ncmp(sc_nint(i), wmax) >= 0)
			break;
		save = path_push(c, "[%d]", i);
		if (i >= nr && sc_is_bool_schema(ri, false) && !sc_is_bool_schema(wi, false))
			add_reason(c, BF(c, "no longer allowed (items: false after %d prefixItems)",
							 "allowed now but not by the old schema (items: false after %d prefixItems)"),
					   nr);
		else
			sub(c, sc_view(wi, w->root, V_FULL, T_ALL), sc_view(ri, r->root, V_FULL, T_ALL));
		path_pop(c, save);
	}
	if (!(wmax && sc_ncmp(sc_nint(Max(nw, nr)), wmax) >= 0))
	{
		int			save = path_push(c, "[*]", 0);

		if (sc_is_bool_schema(ritems, false) && !sc_is_bool_schema(witems, false))
		{
			path_pop(c, save);
			add_reason(c, BF(c, "items after the first %d are no longer allowed (items: false)",
							 "more than %d items are allowed but the old schema refuses them (items: false)"),
					   nr);
		}
		else
		{
			sub(c, sc_view(witems, w->root, V_FULL, T_ALL), sc_view(ritems, r->root, V_FULL, T_ALL));
			path_pop(c, save);
		}
	}
}

static bool
name_in(JsonbValue *arr, JsonbValue *name)
{
	for (int i = 0; i < sc_array_len(arr); i++)
		if (sc_values_equal(sc_array_elem(arr, i), name))
			return true;
	return false;
}

/* additionalProperties absent or true */
static bool
open_model(JsonbValue *addl)
{
	return addl == NULL || sc_is_bool_schema(addl, true) ||
		(sc_is_object(addl) && sc_trivially_true(&(View) {addl, NULL, V_FULL, T_ALL}));
}

static void
cmp_objects(Ctx *c, View *w, View *r)
{
	JsonbValue *ws = w->s,
			   *rs = r->s;
	JsonbValue *wreq = sc_kw(ws, "required"),
			   *rreq = sc_kw(rs, "required");
	JsonbValue *wprops = sc_kw(ws, "properties"),
			   *rprops = sc_kw(rs, "properties");
	JsonbValue *waddl = sc_kw(ws, "additionalProperties"),
			   *raddl = sc_kw(rs, "additionalProperties");
	JsonbValue *keys,
			   *vals;
	int			n;
	static JsonbValue true_schema = {.type = jbvBool,.val.boolean = true};

	if ((rreq && !sc_is_array(rreq)) || (rprops && !sc_is_object(rprops)))
		add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
				   (rreq && !sc_is_array(rreq)) ? "required" : "properties");
	for (int i = 0; i < sc_array_len(rreq); i++)
	{
		JsonbValue *name = sc_array_elem(rreq, i);

		if (name->type == jbvString && !name_in(wreq, name))
			add_reason(c, BF(c, "property \"%.*s\" became required",
							 "property \"%.*s\" is no longer required"),
					   name->val.string.len, name->val.string.val);
	}

	/* the reader's declared properties */
	n = sc_object_entries(rprops, &keys, &vals);
	for (int i = 0; i < n; i++)
	{
		char	   *k = keys[i].val.string.val;
		int			klen = keys[i].val.string.len;
		JsonbValue *wp = wprops ? sc_kwn(wprops, k, klen) : NULL;
		View		rv = sc_view(&vals[i], r->root, V_FULL, T_ALL);
		int			save;

		if (wp == NULL)
		{
			if (sc_is_bool_schema(waddl ? waddl : &true_schema, false))
				continue;		/* the writer never has it */
			if (open_model(waddl))
			{
				if (!sc_trivially_true(&rv))
					add_reason(c, BF(c, "property \"%.*s\" was added to an open content model (additionalProperties absent or true), where old events may hold any value under that name",
									 "property \"%.*s\" was removed while the new content model is open (additionalProperties absent or true), so new events may hold any value under that name"),
							   klen, k);
				continue;
			}
			wp = waddl;
		}
		save = path_push_name(c, k, klen);
		sub(c, sc_view(wp, w->root, V_FULL, T_ALL), rv);
		path_pop(c, save);
	}

	/* the writer's properties the reader does not declare */
	n = sc_object_entries(wprops, &keys, &vals);
	for (int i = 0; i < n; i++)
	{
		char	   *k = keys[i].val.string.val;
		int			klen = keys[i].val.string.len;
		int			save;

		if (rprops && sc_kwn(rprops, k, klen))
			continue;
		if (open_model(raddl) || sc_is_bool_schema(&vals[i], false))
			continue;
		if (sc_is_bool_schema(raddl, false))
		{
			add_reason(c, BF(c, "property \"%.*s\" was removed from a closed content model (additionalProperties: false)",
							 "property \"%.*s\" was added but the old content model is closed (additionalProperties: false)"),
					   klen, k);
			continue;
		}
		save = path_push_name(c, k, klen);
		sub(c, sc_view(&vals[i], w->root, V_FULL, T_ALL), sc_view(raddl, r->root, V_FULL, T_ALL));
		path_pop(c, save);
	}

	/* every other name */
	if (!open_model(raddl) && !sc_is_bool_schema(waddl ? waddl : &true_schema, false))
	{
		if (sc_is_bool_schema(raddl, false))
			add_reason(c, BF(c, "additionalProperties: false was added (the content model was closed)",
							 "additionalProperties: false was removed (the content model was opened)"));
		else
		{
			int			save = path_push(c, ".*", 0);

			sub(c, sc_view(waddl ? waddl : &true_schema, w->root, V_FULL, T_ALL),
				sc_view(raddl, r->root, V_FULL, T_ALL));
			path_pop(c, save);
		}
	}
}

static void
report_value(Ctx *c, JsonbValue *v, bool is_const, bool reader_enum, VRes res, StringInfo why)
{
	char	   *vt = sc_value_text(v);
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

	sc_scan_keywords(r->s, &has_base, &has_comb, &unknown);
	foreach(lc, unknown)
		add_reason(c, "keyword \"%s\" is not supported; cannot be shown compatible",
				   (char *) lfirst(lc));

	wm = sc_value_mask(w);
	if (wm == 0)
		return;

	/* a finite writer: each of its values */
	if ((set = sc_finite_values(w->s, &n)) != NULL)
	{
		bool		is_const = sc_kw(w->s, "const") != NULL;
		bool		reader_enum = sc_kw(r->s, "enum") != NULL;

		for (int i = 0; i < n; i++)
		{
			JsonbValue *v = sc_finite_value(w->s, set, i);
			StringInfoData why;
			VRes		res;

			if (!(sc_kind_of(v) & w->tmask) ||
				sc_validate(c, v, sc_view(w->s, w->root, V_BASE, T_ALL), NULL) == VR_NO)
				continue;
			initStringInfo(&why);
			res = sc_validate(c, v, *r, &why);
			if (res != VR_YES)
				report_value(c, v, is_const, reader_enum, res, &why);
		}
		return;
	}

	/* a finite reader: the writer must be finite too (null, booleans) */
	if (sc_finite_values(r->s, &n) != NULL)
	{
		JsonbValue	cand[3];
		const char *what = sc_kw(r->s, "const") ? "const" : "enum";

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

			if (!(sc_kind_of(&cand[i]) & wm) ||
				sc_validate(c, &cand[i], sc_view(w->s, w->root, V_BASE, T_ALL), NULL) == VR_NO)
				continue;
			initStringInfo(&why);
			res = sc_validate(c, &cand[i], *r, &why);
			if (res == VR_MAYBE)
				add_reason(c, "value %s cannot be shown valid (%s)", sc_value_text(&cand[i]), why.data);
			else if (res == VR_NO)
				add_reason(c, BF(c, "value %s is no longer valid (%s)",
								 "value %s is allowed but the old schema refuses it (%s)"),
						   sc_value_text(&cand[i]), why.data);
		}
		return;
	}

	rm = sc_type_mask(r->s);
	if (rm < 0)
	{
		add_reason(c, "keyword \"type\" has an invalid value; cannot be shown compatible");
		return;
	}
	if (wm & ~rm)
		add_reason(c, "type changed from %s to %s",
				   sc_mask_text(OLDV(c, wm, rm)), sc_mask_text(NEWV(c, wm, rm)));
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
	JsonbValue *br = sc_branches(&r);
	int			nb = br ? sc_array_len(br) : 0;

	for (int i = 0; i < nb; i++)
	{
		View		bi = sc_view(sc_array_elem(br, i), r.root, V_FULL, T_ALL);
		bool		ok = true;

		if (!sc_try_sub(c, w, bi))
			continue;
		if (r.k == V_ONEOF)
			for (int j = 0; j < nb && ok; j++)
			{
				View		bj = sc_view(sc_array_elem(br, j), r.root, V_FULL, T_ALL);

				ok = j == i || sc_disjoint(c, bi, bj) || sc_disjoint(c, w, bj);
			}
		if (ok)
			return true;
	}
	if (split)
	{
		int			wm = sc_value_mask(&w);
		int			kinds[] = {T_NULL, T_BOOL, T_OBJECT, T_ARRAY, T_STRING, T_NUMBER};
		int			nk = 0;

		for (int k = 0; k < (int) lengthof(kinds); k++)
			nk += (wm & kinds[k]) != 0;
		if (nk < 2)
			return false;
		for (int k = 0; k < (int) lengthof(kinds); k++)
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

static const void *
node_id(JsonbValue *s)
{
	/* a subschema's container lies in its document, wherever it is reached from */
	return s->type == jbvBinary ? (const void *) s->val.binary.data : (const void *) s;
}

/* a $ref pair met before: 1 assume it holds, -1 a cycle, 0 new */
static int
ref_seen(Ctx *c, View *w, View *r)
{
	for (int i = 0; i < c->nframes; i++)
	{
		RefFrame   *f = &c->frames[i];

		if (f->w == node_id(w->s) && f->wk == w->k && f->wtmask == w->tmask &&
			f->r == node_id(r->s) && f->rk == r->k)
			return f->descents < c->descents ? 1 : -1;
	}
	return 0;
}

static void
sub_ref(Ctx *c, View w, View r, bool reader_side)
{
	View		t;
	View	   *side = reader_side ? &r : &w;
	int			seen;

	if (!sc_resolve_ref(side, &t))
	{
		JsonbValue *ref = sc_kw(side->s, "$ref");

		add_reason(c, "$ref %s cannot be resolved (only #/$defs/<name> of the same schema); cannot be shown compatible",
				   ref ? sc_value_text(ref) : "?");
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
	c->frames[c->nframes].w = node_id(w.s);
	c->frames[c->nframes].wk = w.k;
	c->frames[c->nframes].wtmask = w.tmask;
	c->frames[c->nframes].r = node_id(r.s);
	c->frames[c->nframes].rk = r.k;
	c->frames[c->nframes].descents = c->descents;
	c->nframes++;
	sub(c, w, r);
	c->nframes--;
}

/* equal subschemas of the two documents mean the same: their $refs too */
static bool
same_refs(Ctx *c, JsonbValue *s)
{
	int			refs = sc_contains_ref(s);

	return refs == 0 || (refs == 1 && c->defs_equal);
}

static void
sub_inner(Ctx *c, View *w, View *r)
{
	JsonbValue *x;
	ListCell   *lc;

	if ((r->k == V_FULL || r->k == V_BASE) && sc_trivially_true(r))
		return;
	if ((w->k == V_FULL || w->k == V_BASE) && sc_is_bool_schema(w->s, false))
		return;
	if ((w->s->type != jbvBool && !sc_is_object(w->s)) ||
		(r->s->type != jbvBool && !sc_is_object(r->s)))
	{
		add_reason(c, "a subschema is not an object or a boolean; cannot be shown compatible");
		return;
	}
	if (sc_is_bool_schema(r->s, false))
	{
		add_reason(c, BF(c, "no value is accepted any more (false schema)",
						 "the old schema accepts no value here (false schema)"));
		return;
	}

	/* equal schemas (or equal combinator parts) */
	if (w->k == r->k && sc_is_object(w->s) && sc_is_object(r->s) && w->k != V_REF &&
		same_refs(c, w->s))
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
			JsonbValue *a = sc_kw(w->s, kwname),
					   *b = sc_kw(r->s, kwname);

			if (a && b && sc_values_equal(a, b) && same_refs(c, a))
				return;
		}
	}

	/* the reader: each of its parts */
	if (r->k == V_REF)
	{
		sub_ref(c, *w, *r, true);
		return;
	}
	if (r->k == V_FULL && sc_has_combinators(r))
	{
		foreach(lc, sc_parts_of(r))
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
	if (w->k == V_FULL && sc_has_combinators(w))
	{
		List	   *parts = sc_parts_of(w);
		View	   *base = NULL;

		if (list_length(parts) == 1)
		{
			sub(c, *(View *) linitial(parts), *r);
			return;
		}
		foreach(lc, parts)
		{
			View	   *p = lfirst(lc);

			if (sc_try_sub(c, *p, *r))
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
		JsonbValue *br = sc_branches(w);

		if (br == NULL)
		{
			add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
					   w->k == V_ANYOF ? "anyOf" : "oneOf");
			return;
		}
		for (int i = 0; i < sc_array_len(br); i++)
			sub(c, sc_view(sc_array_elem(br, i), w->root, V_FULL, w->tmask), *r);
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
			if (sc_branches(r) == NULL)
				add_reason(c, "keyword \"%s\" has an invalid value; cannot be shown compatible",
						   r->k == V_ANYOF ? "anyOf" : "oneOf");
			else if (!fits_union(c, *w, *r, true))
				add_reason(c, "no branch of %s can be shown to accept every value of the %s schema%s; cannot be shown compatible",
						   r->k == V_ANYOF ? "anyOf" : "oneOf", WRITER(c),
						   r->k == V_ONEOF ? " (and only that branch)" : "");
			break;
		case V_NOT:
			x = sc_kw(r->s, "not");
			if (!sc_disjoint(c, *w, sc_view(x, r->root, V_FULL, T_ALL)))
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
	/* nothing to compare: no work, even at the bounds */
	if (sc_is_bool_schema(r.s, true) ||
		((w.k == V_FULL || w.k == V_BASE) && sc_is_bool_schema(w.s, false)))
		return;
	if (!sc_enter(c))
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
sc_try_sub(Ctx *c, View w, View r)
{
	int			n = list_length(c->reasons);
	bool		ok;

	sub(c, w, r);
	ok = list_length(c->reasons) == n;
	c->reasons = list_truncate(c->reasons, n);
	return ok;
}

/* ---------------------------------------------------------------- */
/* Disjointness: no value is valid under both (sound, not complete) */
/*                                                                  */
/* sc_disjoint() answers true only when it can show that no value   */
/* is valid under both schemas (different types, enum values the    */
/* other schema refuses, or a required property whose schemas are   */
/* disjoint: a discriminator).  Under "not" it asks sub().          */
/* ---------------------------------------------------------------- */

/* the schema of property `name` of an object base */
static JsonbValue *
prop_schema(JsonbValue *s, const char *name, int len, bool *declared)
{
	JsonbValue *props = sc_kw(s, "properties");
	JsonbValue *p = props ? sc_kwn(props, name, len) : NULL;
	static JsonbValue true_schema = {.type = jbvBool,.val.boolean = true};

	*declared = p != NULL;
	if (p == NULL)
		p = sc_kw(s, "additionalProperties");
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

		if ((set = sc_finite_values(x.s, &n)) != NULL)
		{
			bool		all_out = true;

			for (int i = 0; i < n && all_out; i++)
			{
				JsonbValue *v = sc_finite_value(x.s, set, i);

				all_out = sc_validate(c, v, y, NULL) == VR_NO;
			}
			if (all_out)
				return true;
		}
	}
	common = sc_value_mask(&a) & sc_value_mask(&b);
	if (common == 0)
		return true;
	if (common == T_OBJECT)
	{
		for (int side = 0; side < 2; side++)
		{
			View		x = side ? b : a;
			View		y = side ? a : b;
			JsonbValue *req = sc_kw(x.s, "required");

			for (int i = 0; i < sc_array_len(req); i++)
			{
				JsonbValue *name = sc_array_elem(req, i);
				bool		dx,
							dy;
				JsonbValue *px,
						   *py;

				if (name->type != jbvString)
					continue;
				px = prop_schema(x.s, name->val.string.val, name->val.string.len, &dx);
				py = prop_schema(y.s, name->val.string.val, name->val.string.len, &dy);
				if (sc_disjoint(c, sc_view(px, x.root, V_FULL, T_ALL),
							 sc_view(py, y.root, V_FULL, T_ALL)))
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
			if (!sc_has_combinators(&a))
			{
				*decided = false;
				return false;
			}
			foreach(lc, sc_parts_of(&a))
			{
				if (sc_disjoint(c, *(View *) lfirst(lc), b))
					return true;
			}
			return false;
		case V_REF:
			return sc_resolve_ref(&a, &t) && sc_disjoint(c, t, b);
		case V_ANYOF:
		case V_ONEOF:
			if ((br = sc_branches(&a)) == NULL)
				return false;
			for (int i = 0; i < sc_array_len(br); i++)
				if (!sc_disjoint(c, sc_view(sc_array_elem(br, i), a.root, V_FULL, a.tmask), b))
					return false;
			return true;
		case V_NOT:
			/* not N and b are disjoint when b fits N */
			return sc_try_sub(c, b, sc_view(sc_kw(a.s, "not"), a.root, V_FULL, T_ALL));
		case V_BASE:
			*decided = false;
			return false;
	}
	return false;
}

static bool
sc_disjoint(Ctx *c, View a, View b)
{
	bool		res;
	bool		decided;

	if (!sc_enter(c))
		return false;
	if (sc_is_bool_schema(a.s, false) || sc_is_bool_schema(b.s, false))
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
		JsonbValue *wd = sc_kw(wroot, "$defs"),
				   *rd = sc_kw(rroot, "$defs");

		c.defs_equal = (wd == NULL && rd == NULL) ||
			(wd != NULL && rd != NULL && sc_values_equal(wd, rd));
		sub(&c, sc_view(wroot, wroot, V_FULL, T_ALL), sc_view(rroot, rroot, V_FULL, T_ALL));
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
