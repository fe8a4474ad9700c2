/*-------------------------------------------------------------------------
 *
 * schema_compat_int.h
 *	  Internals shared by schema_compat.c (the inclusion test) and
 *	  schema_compat_json.c (reading schemas, validating one value,
 *	  disjointness).  See schema_compat.c for the method.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SCHEMA_COMPAT_INT_H
#define EB_SCHEMA_COMPAT_INT_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

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
	const void *w;				/* identity of the writer's schema ... */
	ViewKind	wk;
	uint8		wtmask;
	const void *r;				/* ... and of the reader's */
	ViewKind	rk;
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


/* schema_compat_json.c: reading schemas, validating values, disjointness */
extern bool sc_is_object(JsonbValue *v);
extern bool sc_is_array(JsonbValue *v);
extern bool sc_is_bool_schema(JsonbValue *v, bool val);
extern JsonbValue *sc_kw(JsonbValue *s, const char *name);
extern JsonbValue *sc_kwn(JsonbValue *s, const char *name, int len);
extern int	sc_array_len(JsonbValue *a);
extern JsonbValue *sc_array_elem(JsonbValue *a, int i);
extern int	sc_object_entries(JsonbValue *o, JsonbValue **keys, JsonbValue **vals);
extern char *sc_value_text(JsonbValue *v);
extern bool sc_values_equal(JsonbValue *a, JsonbValue *b);
extern int	sc_ncmp(Numeric a, Numeric b);
extern Numeric sc_nint(int64 i);
extern char *sc_nstr(Numeric n);
extern bool sc_nintegral(Numeric n);
extern bool sc_nmultiple(Numeric a, Numeric d);
extern int	sc_kw_num(JsonbValue *s, const char *name, Numeric *out);
extern int	sc_kind_of(JsonbValue *v);
extern int	sc_type_mask(JsonbValue *s);
extern char *sc_mask_text(int m);
extern int	sc_value_mask(View *v);
extern void sc_scan_keywords(JsonbValue *s, bool *has_base, bool *has_comb, List **unknown);
extern bool sc_trivially_true(View *v);
extern int	sc_contains_ref(JsonbValue *v);
extern View sc_view(JsonbValue *s, JsonbValue *root, ViewKind k, uint8 tmask);
extern bool sc_resolve_ref(View *v, View *out);
extern List *sc_parts_of(View *v);
extern bool sc_has_combinators(View *v);
extern JsonbValue *sc_branches(View *v);
extern bool sc_tick(Ctx *c);
extern bool sc_enter(Ctx *c);
extern VRes sc_validate(Ctx *c, JsonbValue *v, View s, StringInfo why);
extern JsonbValue *sc_finite_values(JsonbValue *s, int *n);
extern JsonbValue *sc_finite_value(JsonbValue *s, JsonbValue *set, int i);

#endif							/* EB_SCHEMA_COMPAT_INT_H */
